"""The one markdown table of benchmarks/real_model_step.py, a pure function of its JSON."""
from __future__ import annotations


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render(result: dict) -> str:
    """Machine, matmul peak, the training-step configurations (with MFU) and the pass alone."""
    cpu, params = result["machine"], result["parameters"]
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items())
    lines = [f"Machine: {cpu['model']}, {cpu['cores']} cores; {flags}; load average {cpu['load_average_1m']} "
             f"at start; torch {result['torch']}.", ""]
    lines += ["| GEMM (m x k @ k x n) | dtype | threads | GFLOPS |", "|---|---|---|---:|"]
    lines += [f"| {r['shape']} {' x '.join(map(str, r['m_k_n']))} | {r['dtype']} | {r['threads']} | {r['gflops']} |"
              for r in result["matmul_peak"]]
    lines += ["", f"MFU = 6 x {params['total']:,} parameters (every parameter once; the tied embedding is the "
              f"LM head's matrix, counted once; {params['non_embedding']:,} without it) x tokens/s (non-padding "
              f"tokens) / fp32 peak {result['peak_gflops']} GFLOPS ({result['peak_shape']}).", ""]
    lines += ["| configuration | tokens/s | s/step | peak GiB | MFU % | padding % | compile s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["steps"]:
        lines.append(f"| {r['config']} | {_fmt(r['tokens_per_s'], 4)} | {_fmt(r['seconds_per_step'])} | "
                     f"{_fmt(r['peak_step_memory_gib'])} | {_fmt(100 * r['mfu'])} | "
                     f"{_fmt(100 * r['padding_fraction'])} | {_fmt(r['compile_s'])} |")
    alone = result["pass_alone"]
    if alone["rows"]:
        shape = alone["shape"]
        lines += ["", f"The divergence pass alone: hidden {shape['rows']} x {shape['hidden']}, head {shape['vocab']} x "
                  f"{shape['hidden']}, JSD(0.5), forward + backward, {alone['threads']} threads.", "",
                  "| implementation | chunk rows | features | s | compile s | peak extra GiB | loss |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for r in alone["rows"]:
            lines.append(f"| {r['impl']}{' (teacher head inside)' if r['teacher_head_inside'] else ''} | "
                         f"{r['chunk_size']} | {_fmt(r['features'])} | {_fmt(r['seconds'])} | {_fmt(r['compile_s'])} | "
                         f"{_fmt(r['peak_extra_gib'])} | {r['loss']:.6g} |")
    return "\n".join(lines) + "\n"
