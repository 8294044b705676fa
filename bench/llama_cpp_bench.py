#!/usr/bin/env python3
"""llama.cpp's own speed on the same GGUF, prompt and settings as
`cargo run --release -p rein-local --example bench`, through the
llama-cpp-python binding (built from source by scripts/bench-local.sh).
Prints one JSON line in the same shape.

    python3 bench/llama_cpp_bench.py MODEL.gguf [--threads N]
        [--prompt-tokens N] [--gen-tokens N] [--reps N]
"""
import argparse
import json
import os
import time

import llama_cpp

WORDS = ["ledger", "invoice", "shipment", "warehouse", "customer", "refund", "carrier", "parcel"]


def prompt(tokens: int, rep: int) -> str:
    # The same text as the Rust bench's prompt(), in ChatML as llama.cpp's
    # built-in template renders a lone user message for this model.
    text = f"Request {rep}. Here are some notes to keep in mind."
    i = rep
    while len(text) < tokens * 4:
        text += " " + WORDS[i % len(WORDS)]
        i += 3
    text += "\nNow write a long, detailed story about a lighthouse keeper."
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=4096,
        n_batch=512,
        n_ubatch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    pp_tokens = pp_time = tg_tokens = tg_time = 0
    for rep in range(args.reps + 1):
        tokens = llm.tokenize(prompt(args.prompt_tokens, rep).encode(), add_bos=True, special=True)
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prompt_time = time.perf_counter() - started
        started = time.perf_counter()
        generated = 0
        while generated < args.gen_tokens:
            token = llm.sample(temp=0.0)
            if llama_cpp.llama_token_is_eog(llm._model.vocab, token):
                break
            generated += 1
            llm.eval([token])
        generation_time = time.perf_counter() - started
        if rep == 0:
            continue  # warm-up, as in the Rust bench
        pp_tokens += len(tokens)
        pp_time += prompt_time
        tg_tokens += generated
        tg_time += generation_time
    print(json.dumps({
        "engine": f"llama-cpp-python {llama_cpp.__version__}",
        "threads": args.threads,
        "constrained": False,
        "prompt_tokens": pp_tokens // args.reps,
        "prompt_tok_s": round(pp_tokens / pp_time, 1),
        "gen_tokens": tg_tokens // args.reps,
        "gen_tok_s": round(tg_tokens / tg_time, 1),
        "peak_rss_mib": round(peak_rss_mib()),
        "context": 4096,
    }))


if __name__ == "__main__":
    main()
