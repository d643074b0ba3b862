#!/usr/bin/env python3
"""Train Cloister's demo classifier on the Wisconsin Diagnostic Breast Cancer table and export ONNX.

Reads  assets/breast_cancer.csv   (scikit-learn 1.9.1 copy: header `569,30,malignant,benign`,
                                   then 569 rows of 30 features + label, 0 = malignant, 1 = benign)
Writes assets/breast_cancer_classifier.onnx

Model: features float32 [N,30] -> Sub(mean) -> Div(std) -> MatMul/Add (30->16) -> Relu
       -> MatMul/Add (16->2) -> Softmax -> probabilities float32 [N,2]
       (column 0 = malignant, column 1 = benign).
mean/std are those of the training split. The graph is built by hand with onnx.helper (no skl2onnx,
no ai.onnx.ml ops, so tract can run it).

Training is deterministic: fixed seed, full-batch Adam in float64, fixed number of steps. Given the
same package versions the output is identical byte for byte. Pinned versions (requirements):
    numpy==2.4.6
    onnx==1.23.2        (pulls protobuf 7.36.2)
Run:  python3 -m venv /tmp/venv-train && /tmp/venv-train/bin/pip install numpy==2.4.6 onnx==1.23.2
      /tmp/venv-train/bin/python scripts/train_demo_model.py
"""

from __future__ import annotations

import hashlib
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20261122
HIDDEN = 16
STEPS = 600
LR = 0.01
L2 = 1e-3
TEST_FRACTION = 0.2

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSV = ROOT / "assets" / "breast_cancer.csv"
OUT = ROOT / "assets" / "breast_cancer_classifier.onnx"


def load() -> tuple[np.ndarray, np.ndarray]:
    lines = CSV.read_text().strip().splitlines()
    n, d = (int(v) for v in lines[0].split(",")[:2])
    data = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=np.float64)
    assert data.shape == (n, d + 1), data.shape
    return data[:, :d], data[:, d].astype(np.int64)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    return h, softmax(h @ params["w2"] + params["b2"])


def train(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    d = x.shape[1]
    params = {
        "w1": rng.normal(0.0, np.sqrt(2.0 / d), size=(d, HIDDEN)),
        "b1": np.zeros(HIDDEN),
        "w2": rng.normal(0.0, np.sqrt(2.0 / HIDDEN), size=(HIDDEN, 2)),
        "b2": np.zeros(2),
    }
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    onehot = np.eye(2)[y]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, STEPS + 1):
        h, p = forward(params, x)
        dz2 = (p - onehot) / len(x)
        grads = {"w2": h.T @ dz2 + L2 * params["w2"], "b2": dz2.sum(axis=0)}
        dh = (dz2 @ params["w2"].T) * (h > 0)
        grads["w1"] = x.T @ dh + L2 * params["w1"]
        grads["b1"] = dh.sum(axis=0)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            mhat = m[k] / (1 - b1**t)
            vhat = v[k] / (1 - b2**t)
            params[k] = params[k] - LR * mhat / (np.sqrt(vhat) + eps)
    return params


def f32_predict(mean, std, params, x: np.ndarray) -> np.ndarray:
    """What the exported float32 graph computes, in float32."""
    x = (x.astype(np.float32) - mean) / std
    h = np.maximum(x @ params["w1"] + params["b1"], np.float32(0))
    return softmax(h @ params["w2"] + params["b2"])


def export(mean, std, params) -> bytes:
    inits = [
        numpy_helper.from_array(mean, "mean"),
        numpy_helper.from_array(std, "std"),
        numpy_helper.from_array(params["w1"], "w1"),
        numpy_helper.from_array(params["b1"], "b1"),
        numpy_helper.from_array(params["w2"], "w2"),
        numpy_helper.from_array(params["b2"], "b2"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centered"], name="center"),
        helper.make_node("Div", ["centered", "std"], ["scaled"], name="scale"),
        helper.make_node("MatMul", ["scaled", "w1"], ["h_mm"], name="dense1_matmul"),
        helper.make_node("Add", ["h_mm", "b1"], ["h_pre"], name="dense1_bias"),
        helper.make_node("Relu", ["h_pre"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["logits_mm"], name="dense2_matmul"),
        helper.make_node("Add", ["logits_mm", "b2"], ["logits"], name="dense2_bias"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "breast_cancer_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", mean.shape[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=inits,
        doc_string="WDBC classifier; probabilities[:,0] = malignant, probabilities[:,1] = benign",
    )
    model = helper.make_model(
        graph,
        producer_name="cloister/scripts/train_demo_model.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def main() -> int:
    x, y = load()
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(x))
    n_test = int(round(TEST_FRACTION * len(x)))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])

    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    params = train((x[train_idx] - mean) / std, y[train_idx], rng)

    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    probs = f32_predict(mean32, std32, p32, x)
    pred = probs.argmax(axis=1)
    correct = pred == y
    margin = np.abs(probs[:, 1] - probs[:, 0]).min()

    blob = export(mean32, std32, p32)
    OUT.write_bytes(blob)

    print(f"train rows {len(train_idx)}, test rows {len(test_idx)}")
    print(f"train accuracy {correct[train_idx].mean():.6f}")
    print(f"test accuracy  {correct[test_idx].mean():.6f} ({correct[test_idx].sum()}/{len(test_idx)})")
    print(f"full-table accuracy {correct.mean():.9f} ({correct.sum()}/{len(x)} correct)")
    print(f"smallest |p1-p0| over all rows {margin:.6f}")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(blob)} bytes) sha256 {hashlib.sha256(blob).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
