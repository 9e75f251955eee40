"""Where a training / scoring step of the gpu profile's model spends its time: attention kernels
with and without a padding mask (not a test; prints one JSON line per setting).

    python scripts/gpu/profile_attention.py --model .weights/smollm2-135m-instruct --batch 16 --length 2218
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def timeit(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps, torch.cuda.max_memory_allocated() / 2**30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=2218)
    ap.add_argument("--impls", nargs="+", default=["sdpa", "eager"])
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM

    b, t = a.batch, a.length
    ids = torch.randint(3, 40000, (b, t), device="cuda")
    pad_mask = torch.ones(b, t, dtype=torch.long, device="cuda")
    for i in range(b):  # a spread of lengths, as a length-grouped batch would still have (up to 10% padding)
        pad_mask[i, : int(0.1 * t * i / b)] = 0
    n_params = None
    for impl in a.impls:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation=impl).cuda()
        n_params = sum(p.numel() for p in model.parameters())
        for mask_name, mask in (("none", None), ("padding", pad_mask)):
            for backend in ("auto", "efficient", "flash", "math"):
                if impl != "sdpa" and backend != "auto":
                    continue
                if backend == "flash" and mask is not None:
                    continue
                ctx = {"auto": None, "efficient": SDPBackend.EFFICIENT_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                       "math": SDPBackend.MATH}[backend]

                def fwd():
                    with torch.no_grad():
                        model(input_ids=ids, attention_mask=mask, logits_to_keep=1)

                def train():
                    out = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, output_hidden_states=True)
                    out.hidden_states[-1].float().pow(2).mean().backward()

                row = {"impl": impl, "mask": mask_name, "backend": backend, "batch": b, "length": t}
                for name, fn in (("forward", fwd), ("fwd_bwd", train)):
                    try:
                        if ctx is None:
                            s, peak = timeit(fn)
                        else:
                            with sdpa_kernel([ctx]):
                                s, peak = timeit(fn)
                        row[name + "_s"] = round(s, 4)
                        row[name + "_peak_gib"] = round(peak, 1)
                        mult = 2 if name == "forward" else 6
                        row[name + "_tflops_6n"] = round(mult * n_params * b * t / s / 1e12, 1)
                    except Exception as e:  # noqa: BLE001
                        row[name + "_error"] = f"{type(e).__name__}: {str(e)[:160]}"
                    model.zero_grad(set_to_none=True)
                print(json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
