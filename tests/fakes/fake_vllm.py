"""A stand-in for the `vllm` executable, for testing how `tpplan bench` handles processes.

    vllm serve MODEL --port P [...]      an HTTP server with /health and /v1/completions
    vllm bench serve --base-url U ...    a client: sends --num-prompts requests, --max-concurrency at
                                         a time, times them, writes a result JSON like vLLM's

FAKE_VLLM_MODE picks how the server behaves: ok | slow (listens after FAKE_VLLM_DELAY s) | crash
(exits 1 with an OOM message) | reject (argparse error, exit 2) | hang (never listens) | die_mid
(exits on its first completion request). The server forks a worker process (as vLLM forks its
engine core and TP workers) and writes both pids to FAKE_VLLM_PIDS, so tests can check that
stopping the server leaves no orphan.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from statistics import mean, median
from urllib.request import Request, urlopen

STEP_S = 0.002  # per generated token


def arg(argv: list[str], flag: str, default: str = "") -> str:
    return argv[argv.index(flag) + 1] if flag in argv else default


def serve(argv: list[str]) -> None:
    mode = os.environ.get("FAKE_VLLM_MODE", "ok")
    print(f"fake vllm serve {' '.join(argv)} (mode {mode})", flush=True)
    if mode == "reject":
        print("vllm serve: error: unrecognized arguments: --no-such-flag", flush=True)
        sys.exit(2)
    worker = os.fork()
    if worker == 0:  # the "engine core": lives until killed
        while True:
            time.sleep(1)
    pids = os.environ.get("FAKE_VLLM_PIDS")
    if pids:
        with open(pids, "w") as f:
            f.write(f"{os.getpid()} {worker}\n")
    if mode == "crash":
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        os._exit(1)
    if mode == "hang":
        while True:
            time.sleep(1)
    if mode == "slow":
        time.sleep(float(os.environ.get("FAKE_VLLM_DELAY", "3")))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def do_POST(self) -> None:
            if mode == "die_mid":
                print("fatal: engine core died", flush=True)
                os._exit(3)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(STEP_S * int(body.get("max_tokens", 1)))
            data = json.dumps({"choices": [{"text": "w1 " * body.get("max_tokens", 1)}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer(("127.0.0.1", int(arg(argv, "--port", "8000"))), Handler).serve_forever()


def bench(argv: list[str]) -> None:
    url = arg(argv, "--base-url") + "/v1/completions"
    n, c = int(arg(argv, "--num-prompts", "8")), int(arg(argv, "--max-concurrency", "1"))
    osl = int(arg(argv, "--random-output-len", "16"))
    lock, ttft, tpot = threading.Lock(), [], []

    def one(_: int) -> None:
        t0 = time.perf_counter()
        req = Request(url, json.dumps({"max_tokens": osl}).encode(), {"Content-Type": "application/json"})
        with urlopen(req, timeout=60) as r:
            r.read()
        t = (time.perf_counter() - t0) * 1e3
        with lock:
            ttft.append(t / osl)
            tpot.append((t - t / osl) / max(1, osl - 1))

    start = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(one, range(n)))
    dur = time.perf_counter() - start
    out = {"completed": len(ttft), "failed": n - len(ttft), "output_throughput": len(ttft) * osl / dur}
    for name, xs in (("ttft", ttft), ("tpot", tpot), ("itl", tpot)):
        xs = sorted(xs)
        out |= {f"mean_{name}_ms": mean(xs), f"median_{name}_ms": median(xs), f"p99_{name}_ms": xs[-1]}
        out[f"p50_{name}_ms"] = median(xs)
    path = os.path.join(arg(argv, "--result-dir", "."), arg(argv, "--result-filename", "result.json"))
    with open(path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2:])
    elif sys.argv[1:3] == ["bench", "serve"]:
        bench(sys.argv[3:])
    else:
        sys.exit(f"fake vllm: unknown command {sys.argv[1:]}")
