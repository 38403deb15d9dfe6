"""The short Markdown report of a ``gpu_suite.py`` results dict (the JSON holds everything else)."""

from __future__ import annotations

GIB = 1 << 30


def markdown(results: dict) -> str:
    lines = [
        f"# GPU suite, {results['date']}: {results['device']}, torch {results['torch']}",
        "",
        _ceiling(results),
        "",
        *_targets(results),
    ]
    lines += _table(
        "Speed: one step of the released DiT, uncapped (MFU against the measured bf16 matmul rate)",
        ("weights", "attention", "video", "s/step", "TFLOP/s", "MFU", "peak GiB (alloc / est.)", "finite"),
        [
            (
                e["weights"],
                e["attention"],
                e["video"],
                f"{e['seconds']:.2f}",
                f"{e['tflops']:.0f}",
                _percent(e.get("mfu")),
                f"{_gib(e.get('peak_allocated'))} / {_gib(e.get('estimate_peak'))}",
                _yes(e["finite"]),
            )
            for e in results["speed"]
        ],
    )
    lines += _table(
        "Emulated cards: block swap on auto (sdpa); peak allocated vs weights + buffers + activations, "
        "reserved vs the whole estimate",
        (
            "card",
            "weights",
            "video",
            "prefetch",
            "swap d + s",
            "status",
            "alloc / est.",
            "reserved / est.",
            "s/step",
            "vs uncapped",
        ),
        [
            (
                f"{e['card_gb']} GB",
                e["weights"],
                e["video"],
                "on" if e["prefetch"] else "off",
                " + ".join(map(str, e.get("plan", ["?", "?"])))
                + ("" if e.get("plan_fits", True) else " (plan: no fit)"),
                e["status"],
                f"{_gib(e.get('peak_allocated'))} / {_gib(e.get('estimate_without_margin'))}",
                f"{_gib(e.get('peak_reserved'))} / {_gib(e.get('estimate_peak'))}",
                f"{e['seconds']:.2f}" if "seconds" in e else "-",
                _signed(e.get("vs_uncapped")),
            )
            for e in results["caps"]
        ],
    )
    lines += _table(
        "VAE decode, auto tiling under each cap (peak above the weights vs the tile estimate)",
        ("card", "video", "tiling", "status", "s", "peak GiB / est.", "finite"),
        [
            (
                f"{e['card_gb']} GB",
                e["video"],
                e.get("tiling", "-"),
                e["status"],
                f"{e['seconds']:.1f}" if "seconds" in e else "-",
                f"{_gib(e.get('above_weights'))} / {_gib(e.get('estimate'))}",
                _yes(e.get("finite")),
            )
            for e in results["vae"]
        ],
    )
    lines += _table(
        "Numerics: tiny DiT, relative L2 of the outputs",
        ("check", "relative L2", "bound", "ok"),
        [(e["check"], f"{e['rel_l2']:.4f}", e["bound"], _yes(e["ok"])) for e in results["numerics"]],
    )
    for note in results["skipped"]:
        reason = note.get("reason") or f"predicted {note['predicted_s']} s, {note['left_s']} s left"
        lines.append(f"- skipped {note['task']}: {reason}")
    for error in results["errors"]:
        lines.append(f"- FAILED {error['task']}: {error['error']}")
    if "elapsed_s" in results:
        lines.append(f"\nTasks took {results['elapsed_s']} s of a {results['budget_s']:.0f} s budget.")
    return "\n".join(lines) + "\n"


def _targets(results: dict) -> list[str]:
    """Issue 16's targets, each with the measurement that answers it (or that none was made)."""
    large = max(results["flops"], key=lambda video: results["flops"][video]["total"])
    bf16 = [e for e in results["speed"] if e["weights"] == "bf16" and e["video"] == large and "mfu" in e]
    best = max(bf16, key=lambda e: e["mfu"], default=None)
    swap = [e for e in results["caps"] if e["video"] == large and e["prefetch"] and "vs_uncapped" in e]
    first = swap[0] if swap else None
    caps = results["caps"]
    accurate = [e for e in caps if "allocated_vs_estimate" in e]
    decodes = results["vae"]
    lines = ["## Targets", ""]
    lines.append(
        f"- bf16 {large} step >= 55% MFU with the best attention: "
        + (f"{best['mfu']:.1%} with {best['attention']}" if best else "not measured")
    )
    lines.append(
        f"- prefetch overhead < 5% of the step at {large} on the {first['card_gb'] if first else '?'} GB card: "
        + (f"{first['vs_uncapped']:+.1%} over the uncapped step" if first else "not measured")
    )
    ooms = [f"{e['card_gb']} GB {e['video']}" for e in caps if e.get("status") == "oom"]
    off = [f"{e['card_gb']} GB {e['video']} x{e['allocated_vs_estimate']:.2f}" for e in accurate]
    lines.append(
        f"- no OOM on any card: {len(caps) - len(ooms)} of {len(caps)} runs"
        + (f" (OOM: {', '.join(ooms)})" if ooms else "")
    )
    within = sum(abs(e["allocated_vs_estimate"] - 1) <= 0.10 for e in accurate)
    lines.append(
        f"- peak allocated within 10% of the estimate (weights + buffers + activations): {within} of {len(accurate)}"
        + (f" ({', '.join(off)})" if off else "")
    )
    decoded = sum(e.get("status") == "ok" for e in decodes)
    lines += [f"- tiled decode under each cap without OOM: {decoded} of {len(decodes)} decodes", ""]
    return lines


def _ceiling(results: dict) -> str:
    ceiling = results.get("ceiling") or {}
    if "bf16_matmul_flops" not in ceiling:
        return "No matmul ceiling measured (dry run)."
    return (
        f"Dense bf16 matmul 8192^3: {ceiling['bf16_matmul_flops'] / 1e12:.0f} TFLOP/s measured "
        f"(datasheet {ceiling['datasheet_bf16_flops'] / 1e12:.1f}). Attention backends: "
        f"{', '.join(results['attention_backends'])}."
    )


def _table(title: str, header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    if not rows:
        return [f"{title}: nothing measured.", ""]
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")
