"""Write a tiny random-weight Llama (config, weights, tokenizer) to a directory.

Used by scripts/make-engine.sh so `tpplan bench` has a model to serve on a machine that
cannot reach a model hub. Weights are random (seeded): the model's *speed* is what is
measured, never its text. Sizes are chosen so tensor parallel 1 and 2 both divide the heads
(4 query heads, 2 KV heads) and head_dim is 64, a size every vLLM attention backend supports.

    python scripts/make_tiny_llama.py --out ~/.cache/tpplan/engine/models/tiny-llama
"""

from __future__ import annotations

import argparse
from pathlib import Path

VOCAB_SIZE = 1024
SPECIALS = ["<unk>", "<s>", "</s>"]


def make_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + [f"w{i}" for i in range(VOCAB_SIZE - len(SPECIALS))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.model_max_length = 4096
    fast.save_pretrained(out)


def make_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    make_tokenizer(out)
    make_model(out)
    print(f"tiny-llama written to {out}")


if __name__ == "__main__":
    main()
