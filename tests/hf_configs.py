"""HF config.json bodies the spec tests share (as the models ship them)."""

# DeepSeek-V3 (MLA + MoE, FP8 weights), as its config.json ships it.
DSV3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "vocab_size": 129280,
    "first_k_dense_replace": 3,
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    # As DeepSeek-V3's config.json ships it.
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
}


# An architecture no engine registers (tpplan plans it with a warning).
FOO = {
    "architectures": ["FooForCausalLM"],
    "model_type": "foo",
    "hidden_size": 1024,
    "num_attention_heads": 16,
    "num_hidden_layers": 8,
    "intermediate_size": 4096,
    "vocab_size": 32000,
}
