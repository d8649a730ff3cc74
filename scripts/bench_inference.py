"""Inference speed and memory of the propagation core (``stbv_monai.inference.propagate``).

For the paper-size (``stcn``) and small (``stcn_small``) networks at 384 x 384 and 128 x 128:
frames per second, peak memory, FLOPs per frame (counted with ``torch.utils.flop_counter``:
convolutions and matrix products), and the achieved FLOP/s as a fraction of this machine's
fp32 matrix-multiply rate (measured here with a ``torch.mm`` loop). Then the number of frame
propagations of a two-reference video (about T, not 2T), and peak memory as a video grows from
100 to 1000 frames with a bounded memory (``max_memory_frames``) and an unbounded one.

Videos are a dark disc drifting over a noisy bright background, with references at frames 1 and
T-2 (two labelled frames, as in the datalists); networks are randomly initialised (speed does
not depend on the weights). Every measurement runs in a fresh subprocess, so peaks and warm-up
do not mix; the first, FLOP-counted propagation of each video is the warm-up and is not timed.
Peak memory is the peak resident set size (sampled every 2 ms) above the resident size before
the first propagation, with the interpreter, the model and the input video already in memory;
on a GPU, ``torch.cuda.max_memory_allocated`` above the allocation before the first call. Markdown tables go to
stdout, progress to stderr::

    .venv/bin/python scripts/bench_inference.py [--device cpu|cuda] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("bench_inference")

MB = 2**20
REFERENCE_MEMORY_FRAMES = 5  # memory size for the per-call readout count (reference + 4 memorised frames)

# (model, size, frames) of the speed table; the paper-size model at 384 x 384 gets few frames.
SPEED_CONFIGS = [("stcn", 384, 8), ("stcn", 128, 16), ("stcn_small", 384, 16), ("stcn_small", 128, 50)]
QUICK_SPEED_CONFIGS = [("stcn", 64, 4), ("stcn_small", 128, 8)]
SWEEP_LENGTHS = [100, 300, 1000]
QUICK_SWEEP_LENGTHS = [20, 60]


# ----------------------------------------------------------------------------- measuring tools


def _rss_reader():
    """A function returning this process's resident set size in bytes (psutil, else /proc), or None."""
    try:
        import psutil

        proc = psutil.Process()
        return lambda: proc.memory_info().rss
    except ImportError:
        statm = Path("/proc/self/statm")
        if statm.exists():
            page = os.sysconf("SC_PAGE_SIZE")
            return lambda: int(statm.read_text().split()[1]) * page
    return None


class PeakMemory:
    """Peak memory of a block above its start: RSS sampled by a thread (CPU) or CUDA's allocator peak."""

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device, self.interval = device, interval
        self.rss = _rss_reader()
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = self.peak = torch.cuda.memory_allocated(self.device)
        elif self.rss is not None:
            self.base = self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float | None:
        return (self.peak - self.base) / MB if self.device.type == "cuda" or self.rss is not None else None


def max_rss_mb() -> float:
    """The process's peak resident set size so far (kernel high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 3.0) -> dict[str, Any]:
    """This machine's matrix-multiply rate: best of several timed loops of ``torch.mm``."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize(device)
    start = time.perf_counter()
    torch.mm(a, b)
    synchronize(device)
    per_call = time.perf_counter() - start
    calls = max(1, int(seconds / 5 / max(per_call, 1e-6)))
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        synchronize(device)
        rates.append(2 * n**3 * calls / (time.perf_counter() - start) / 1e9)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "best_gflops": max(rates),
            "median_gflops": statistics.median(rates)}


# ----------------------------------------------------------------------------- workloads


def disc_video(frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """``(T, size, size)`` frames in [0, 1] of a drifting dark disc, and its masks at frames 1 and T-2."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    video = (0.7 + 0.1 * torch.randn(frames, size, size, generator=g)).clamp_(0, 1)
    masks = {}
    for t in range(frames):
        cy = size / 2 + size / 8 * torch.sin(torch.tensor(t / 20.0))
        cx = size / 3 + size / 4 * torch.cos(torch.tensor(t / 30.0))
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (size / 6) ** 2
        video[t][disc] = 0.2
        if t in (1, frames - 2):
            masks[t] = disc.float()
    return video, masks


def component_gflop(model: str, size: int, mem_every: int, top_k: int) -> dict[str, float]:
    """FLOPs of one call of each part of the network at ``size`` (counted on the meta device: shapes only)."""
    from torch.utils.flop_counter import FlopCounterMode

    from stbv_monai.networks import build_network

    with torch.device("meta"):
        net = build_network(model).eval()
        x = torch.empty(1, 3, size, size)
        mask = torch.empty(1, 1, size, size)

    def count(fn):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            out = fn()
        return out, counter.get_total_flops() / 1e9

    feats, key = count(lambda: net.encode_key(x))
    value_map, value = count(lambda: net.encode_value(x, feats.f16, mask))
    memory_key = feats.key.flatten(2).repeat(1, 1, REFERENCE_MEMORY_FRAMES)
    memory_value = value_map.flatten(2).repeat(1, 1, REFERENCE_MEMORY_FRAMES)
    readout, read = count(lambda: net.read_memory(memory_key, memory_value, feats.key, top_k))
    _, decode = count(lambda: net.segment(readout, feats.f16, feats.f8, feats.f4))
    steady = key + read + decode + value / mem_every
    params = sum(p.numel() for p in net.parameters()) / 1e6
    return {"key": key, "readout": read, "decode": decode, "value": value, "steady": steady, "params_m": params}


# ----------------------------------------------------------------------------- child measurements


def _build(model: str, device: torch.device) -> torch.nn.Module:
    from stbv_monai.networks import build_network

    torch.manual_seed(0)
    return build_network(model).to(device).eval()


def _stats_dict(stats: Any) -> dict[str, int]:
    from dataclasses import asdict

    return asdict(stats)


def child_speed(spec: dict[str, Any]) -> dict[str, Any]:
    """Count the FLOPs of one propagation of a video (warm-up), then time ``repeats`` more."""
    from torch.utils.flop_counter import FlopCounterMode

    from stbv_monai.inference import PropagationStats, propagate

    device = torch.device(spec["device"])
    net = _build(spec["model"], device)
    frames, refs = disc_video(spec["frames"], spec["size"])
    frames, refs = frames.to(device), {t: m.to(device) for t, m in refs.items()}
    settings = dict(mem_every=spec["mem_every"], top_k=spec["top_k"], amp=spec["amp"])
    stats = PropagationStats()
    seconds = []
    with PeakMemory(device) as peak:
        with FlopCounterMode(display=False) as counter:
            propagate(net, frames, refs, stats=stats, **settings)
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            propagate(net, frames, refs, **settings)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    components = component_gflop(spec["model"], spec["size"], spec["mem_every"], spec["top_k"])
    return {**spec, "seconds": seconds, "flop_video": counter.get_total_flops(), "stats": _stats_dict(stats),
            "peak_growth_mb": peak.growth_mb, "max_rss_mb": max_rss_mb(), "components": components}


def child_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory and time of one propagation of a ``frames``-long video (after a short warm-up)."""
    import gc

    from stbv_monai.inference import PropagationStats, propagate

    device = torch.device(spec["device"])
    net = _build(spec["model"], device)
    frames, refs = disc_video(spec["frames"], spec["size"])
    frames, refs = frames.to(device), {t: m.to(device) for t, m in refs.items()}
    settings = dict(mem_every=spec["mem_every"], top_k=spec["top_k"], amp=spec["amp"],
                    max_memory_frames=spec["max_memory_frames"])
    warm_frames, warm_refs = disc_video(8, spec["size"])
    warm_frames, warm_refs = warm_frames.to(device), {t: m.to(device) for t, m in warm_refs.items()}
    gc.collect()
    stats = PropagationStats()
    with PeakMemory(device) as peak:  # from before the (smaller) warm-up call, so its allocations count too
        propagate(net, warm_frames, warm_refs, **settings)
        start = time.perf_counter()
        propagate(net, frames, refs, stats=stats, **settings)
        synchronize(device)
        seconds = time.perf_counter() - start
    # propagate returns a (T, H, W) float32 copy of its (T, H, W) float32 result: both exist at the end
    output_mb = 2 * frames.numel() * 4 / MB
    return {**spec, "seconds": seconds, "stats": _stats_dict(stats), "peak_growth_mb": peak.growth_mb,
            "output_mb": output_mb, "max_rss_mb": max_rss_mb()}


def run_child(kind: str, spec: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; returns its JSON result."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {spec} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = load, os.getloadavg()[0]
    return result


# ----------------------------------------------------------------------------- report


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "avx512": " avx512f " in flags, "avx2": " avx2 " in flags}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _load(row: dict[str, Any]) -> str:
    """The 1-minute load average before and after a measurement (other jobs on the machine)."""
    return f"{row['load_before']:.1f}/{row['load_after']:.1f}"


def speed_table(rows: list[dict[str, Any]], peak_gflops: float) -> list[str]:
    lines = ["| model | params | size | T | frames/s (median; min-max) | GFLOP/frame (this video) | "
             "GFLOP/frame (steady) | achieved GFLOP/s | of matmul peak | peak memory growth | peak RSS | load |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        fps = [r["frames"] / s for s in r["seconds"]]
        median_s = statistics.median(r["seconds"])
        achieved = r["flop_video"] / median_s / 1e9
        lines.append(
            f"| {r['model']} | {r['components']['params_m']:.1f} M | {r['size']}² | {r['frames']} | "
            f"{statistics.median(fps):.2f}; {min(fps):.2f}-{max(fps):.2f} | "
            f"{r['flop_video'] / r['frames'] / 1e9:.1f} | {r['components']['steady']:.1f} | {achieved:.1f} | "
            f"{100 * achieved / peak_gflops:.0f}% | {_fmt(r['peak_growth_mb'], 0)} MB | {r['max_rss_mb']:.0f} MB | "
            f"{_load(r)} |")
    return lines


def flop_table(rows: list[dict[str, Any]], mem_every: int) -> list[str]:
    lines = [f"| model | size | key encoding | read-out ({REFERENCE_MEMORY_FRAMES}-frame memory) | decode | "
             f"value encoding | per frame: key + read-out + decode + value/{mem_every} |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        c = r["components"]
        lines.append(f"| {r['model']} | {r['size']}² | {c['key']:.2f} | {c['readout']:.3f} | {c['decode']:.2f} | "
                     f"{c['value']:.2f} | {c['steady']:.2f} |")
    return lines


def count_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| T | references | memory bound | passes | propagated frames | key encodings | value encodings | "
             "most frames in memory |", "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    seen = set()
    for r in rows:
        s, bound = r["stats"], r.get("max_memory_frames")
        if (s["n_frames"], bound) in seen:  # the same video at another size or model
            continue
        seen.add((s["n_frames"], bound))
        lines.append(f"| {s['n_frames']} | 1, {s['n_frames'] - 2} | {bound or 'none'} | {s['n_passes']} | "
                     f"{s['n_propagated_frames']} | {s['n_key_encodings']} | {s['n_value_encodings']} | "
                     f"{s['max_memory_frames']} |")
    return lines


def bank_note(sweep_row: dict[str, Any]) -> str:
    """What one memorised frame costs (keys + values, float32, held twice: the list and its concatenation)."""
    from stbv_monai.networks import build_network

    def per_frame_mb(model: str, size: int) -> float:
        with torch.device("meta"):
            net = build_network(model)
        return 2 * (net.key_dim + net.value_dim) * (-(-size // 16)) ** 2 * 4 / MB

    model, size = sweep_row["model"], sweep_row["size"]
    return (f"Memory bank per memorised frame: {1024 * per_frame_mb(model, size):.0f} KB for {model} at {size}², "
            f"{per_frame_mb('stcn', 384):.1f} MB for stcn at 384² (a read-out also holds a "
            f"memory x query similarity matrix); the result tensors are 2 x T x H x W float32.")


def sweep_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| T | memory | frames held (max) | frames/s | peak memory growth | of which result tensors | rest "
             "| load |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in sorted(rows, key=lambda r: (r["max_memory_frames"] is None, r["frames"])):
        bound = "unbounded" if r["max_memory_frames"] is None else f"bounded ({r['max_memory_frames']})"
        growth = r["peak_growth_mb"]
        rest = None if growth is None else growth - r["output_mb"]
        lines.append(f"| {r['frames']} | {bound} | {r['stats']['max_memory_frames']} | "
                     f"{r['frames'] / r['seconds']:.1f} | {_fmt(growth)} MB | {r['output_mb']:.1f} MB | "
                     f"{_fmt(rest)} MB | {_load(r)} |")
    return lines


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small sizes, short videos, 1 repeat")
    parser.add_argument("--json", type=Path, help="also save every result here")
    parser.add_argument("--repeats", type=int, default=3, help="timed propagations per speed row")
    parser.add_argument("--threads", type=int, help="threads of the speed rows and the matmul (default: torch's)")
    parser.add_argument("--sweep-threads", type=int, default=1,
                        help="threads of the memory sweep (default 1: it measures memory, and one thread keeps a "
                             "shared machine's OpenMP waits out of its run time)")
    parser.add_argument("--only", choices=("speed", "sweep"), help="run one part only")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto", help="autocast (auto: on for cuda)")
    parser.add_argument("--mem-every", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--max-memory-frames", type=int, default=10, help="the bound of the bounded sweep")
    parser.add_argument("--sweep-model", default="stcn_small")
    parser.add_argument("--sweep-size", type=int, default=128)
    parser.add_argument("--sweep-lengths", type=int, nargs="+", help=f"default {SWEEP_LENGTHS}")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    amp = args.amp == "on" or (args.amp == "auto" and device.type == "cuda")
    common = {"device": str(device), "mem_every": args.mem_every, "top_k": args.top_k, "amp": amp}
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"machine": machine_info(device), "settings": {
        **common, "quick": args.quick, "threads": torch.get_num_threads(), "sweep_threads": args.sweep_threads}}
    logger.info("machine: %s", results["machine"])
    results["matmul"] = [matmul_gflops(device, seconds=1.0 if args.quick else 3.0)]
    if amp and device.type == "cuda":
        results["matmul_fp16"] = matmul_gflops(device, torch.float16)
    logger.info("matmul: %s", results["matmul"][0])
    results["speed"] = []
    for model, size, frames in [] if args.only == "sweep" else QUICK_SPEED_CONFIGS if args.quick else SPEED_CONFIGS:
        spec = {**common, "model": model, "size": size, "frames": frames, "repeats": 1 if args.quick else args.repeats}
        logger.info("speed: %s at %d x %d, %d frames ...", model, size, size, frames)
        results["speed"].append(run_child("speed", spec, args.threads))
    results["sweep"] = []
    lengths = args.sweep_lengths or (QUICK_SWEEP_LENGTHS if args.quick else SWEEP_LENGTHS)
    for frames in [] if args.only == "speed" else lengths:
        for bound in (args.max_memory_frames, None):
            spec = {**common, "model": args.sweep_model, "size": args.sweep_size, "frames": frames,
                    "max_memory_frames": bound}
            logger.info("memory: %d frames, max_memory_frames=%s ...", frames, bound)
            results["sweep"].append(run_child("memory", spec, args.sweep_threads))
    results["matmul"].append(matmul_gflops(device, seconds=1.0 if args.quick else 3.0))  # the load may have changed
    return results


def report(results: dict[str, Any]) -> str:
    m, settings = results["machine"], results["settings"]
    peak = max(r["best_gflops"] for r in results["matmul"])
    if "matmul_fp16" in results:
        peak = results["matmul_fp16"]["best_gflops"]
    mm = ", ".join(f"{r['best_gflops']:.0f}" for r in results["matmul"])
    head = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
            f"device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; "
            f"amp {'on' if settings['amp'] else 'off'}, mem_every {settings['mem_every']}, top_k {settings['top_k']}.",
            f"Matrix multiply ({results['matmul'][0]['dtype']}, n={results['matmul'][0]['n']}, before / after): "
            f"{mm} GFLOP/s; the ratio below uses {peak:.0f}.", ""]
    speed, sweep = results["speed"], results["sweep"]
    parts = list(head)
    if speed:
        parts += ["Speed (fps over all T frames, references included; load: 1-min load average before/after):", ""]
        parts += speed_table(speed, peak)
        parts += ["", "GFLOP per call (counted):", ""] + flop_table(speed, settings["mem_every"])
    longest = sorted(sweep, key=lambda r: (r["frames"], r["max_memory_frames"] is None))[-2:]
    parts += ["", "Propagation counts (two references):", ""] + count_table(speed + longest)
    if sweep:
        parts += ["", f"Memory as the video grows ({sweep[0]['model']} at {sweep[0]['size']}², references 1 and T-2, "
                      f"{settings['sweep_threads']} thread(s)):", ""]
        parts += sweep_table(sweep) + ["", bank_note(sweep[0])]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.child:
        kind, spec = args.child
        out = (child_speed if kind == "speed" else child_memory)(json.loads(spec))
        sys.stdout.write(json.dumps(out) + "\n")
        return out
    start = time.perf_counter()
    results = measure(args)
    results["wall_seconds"] = time.perf_counter() - start
    sys.stdout.write(report(results) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    logger.info("done in %.0f s", results["wall_seconds"])
    return results


if __name__ == "__main__":
    main()
