"""Continuous-training job of the churn example: a small PyTorch MLP classifier, logged to MLflow.

An example entrypoint of the pack's training contract (``mlops_airflow.training.context``): it runs in the
*training* environment (``requirements.txt`` / ``requirements-gpu.txt``), never inside the Airflow environment,
as ``python include/training/train.py`` (local subprocess) or as the container command of the GPU training image.

The context reads the environment contract (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME, MLOPS_TRAINING_SET_URI,
MLOPS_TRAINING_CONFIG, MLOPS_DATASET_VERSION, MLOPS_TRAINING_SET_HASH, MLOPS_RUN_TAGS, MLOPS_ENTRYPOINT*,
MLOPS_REQUIREMENTS_SHA256, MLOPS_IMAGE_DIGEST, MLOPS_RESULT_PATH); see ``mlops_airflow/training/context.py``.
The hyper-parameters (``DEFAULT_CONFIG``) come from MLOPS_TRAINING_CONFIG; the rows are split into train and
validation by a stable hash of the first entity column (``entity_columns``, default ``customer_id``).

MLflow run (``ctx.start_run``): tagged with the task identity, dataset, training-set hash, image digest, task type,
label and the entrypoint's hash; on success it carries the params, per-epoch train_loss/val_loss, final val_*
metrics (val_auc, val_accuracy, val_logloss ...), system/* metrics, artifacts config/training_config.json and
runtime/runtime.json, tags mlops.runtime.* and mlops.model_uri, and a logged model (``name="model"``,
torch.export "pt2" format: no pickle, no import of this module's class; its pyfunc takes the raw float32
features and returns P(label == 1), so ``mlflow.pyfunc.load_model(uri).predict(features)`` scores it).

Exit codes: 0 success; 2 invalid input/configuration (retrying will not help);
1 unexpected error (MLflow unreachable, out of memory, bug: a retry may help);
143 terminated by SIGTERM.  Failures print one line ``TRAINING FAILED: <cause>; <next step>``
on stderr and end the MLflow run as FAILED (KILLED on SIGTERM) when a run was started.
On success the last stdout line is ``TRAINING DONE run_id=... val_auc=... ...``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Must be set before torch initialises cuBLAS; harmless on CPU-only machines.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
# Short runs finish before MLflow's default 10 s sampling interval; sample every 2 s instead.
os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "2")
# MLflow >= 3.x auto-detects a uv project (uv.lock) in the working directory and would describe
# the model environment from it; here that would be the Airflow project, not this training env.
os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    from mlops_airflow.training.context import (
        TrainingContext,
        TrainingInputError,
        context,
        exit_code,
        failure_line,
        report_failure,
    )
except ImportError:  # run from a checkout without the pack on PYTHONPATH (the operators and the image set it)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from mlops_airflow.training.context import (
        TrainingContext,
        TrainingInputError,
        context,
        exit_code,
        failure_line,
        report_failure,
    )

# Hyper-parameters (MLOPS_TRAINING_CONFIG overrides them); features, label, task type and entity columns come
# from the context.
DEFAULT_CONFIG: dict = {
    "epochs": 20,
    "batch_size": 256,
    "lr": 0.01,
    "hidden": 32,
    "seed": 42,
    "val_fraction": 0.2,
    "model_name": "churn_classifier",
}
DEFAULT_ENTITY_COLUMNS = ["customer_id"]
InputError = TrainingInputError  # the cause and the next step; exit code 2


def log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- configuration


def parse_config(ctx: TrainingContext) -> dict:
    user = ctx.params
    # JSON null means "use the default" (the orchestrator may pass keys as null).
    cfg = {**DEFAULT_CONFIG, **{k: v for k, v in user.items() if v is not None}}
    unknown = sorted(set(user) - set(DEFAULT_CONFIG) - {"device", "num_threads"})
    if unknown:
        log(f"warning: ignoring unknown MLOPS_TRAINING_CONFIG keys {unknown}")
    cfg.setdefault("device", "auto")
    # One intra-op thread: for a 5-feature MLP, a second thread is slower even on an idle box
    # and 10-100x slower on an oversubscribed node (measured: ~1 ms/step vs 5-120 ms/step).
    cfg.setdefault("num_threads", 1)
    fix = "fix MLOPS_TRAINING_CONFIG"
    if ctx.task_type != "binary_classification":
        raise InputError(f"this entrypoint trains a binary classifier, not task_type={ctx.task_type!r}",
                         "use an entrypoint for that task type (entrypoint=) or task_type='binary_classification'")
    if len(set(ctx.features)) != len(ctx.features):
        raise InputError(f"config 'features' has duplicates: {ctx.features}", fix)
    cfg["features"], cfg["label"] = ctx.features, ctx.label
    cfg["entity_columns"] = ctx.entity_columns or DEFAULT_ENTITY_COLUMNS

    def _int(key: str, lo: int) -> None:
        v = cfg[key]
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():  # MLflow params / templates are strings
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < lo:
            raise InputError(f"config '{key}' must be an integer >= {lo}, got {v!r}", fix)
        cfg[key] = int(v)

    for key, lo in (("epochs", 1), ("batch_size", 1), ("hidden", 1), ("seed", 0), ("num_threads", 1)):
        _int(key, lo)
    for key in ("lr", "val_fraction"):
        v = cfg[key]
        with contextlib.suppress(ValueError, TypeError):
            v = float(v) if isinstance(v, str) else v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"config '{key}' must be a number, got {v!r}", fix)
        cfg[key] = float(v)
    if cfg["lr"] <= 0:
        raise InputError(f"config 'lr' must be > 0, got {cfg['lr']}", fix)
    if not 0.0 < cfg["val_fraction"] < 1.0:
        raise InputError(f"config 'val_fraction' must be in (0, 1), got {cfg['val_fraction']}", fix)
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise InputError(f"config 'device' must be auto|cpu|cuda, got {cfg['device']!r}", fix)
    if not isinstance(cfg["model_name"], str) or not cfg["model_name"]:
        raise InputError("config 'model_name' must be a non-empty string", fix)
    return cfg


# --------------------------------------------------------------------------- data


def load_training_set(ctx: TrainingContext, cfg: dict):
    """Return (X float32 [n, f], y float32 [n], entity id int64 [n]) after validation."""
    fix_data = "check the training set produced by the feature step (MLOPS_TRAINING_SET_URI)"
    features, label, id_col = cfg["features"], cfg["label"], cfg["entity_columns"][0]
    df = ctx.load_training_set()
    if id_col not in df.columns:
        raise InputError(f"training set is missing the entity column {id_col!r} (has {list(df.columns)})",
                         "pass entity_columns in training_config or the training set")

    # Deterministic row order regardless of how the file was written.
    sort_cols = [id_col] + (["event_timestamp"] if "event_timestamp" in df.columns else [])
    df = df.sort_values(sort_cols, kind="mergesort").reset_index(drop=True)

    non_numeric = [
        c for c in features if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    if non_numeric:
        raise InputError(
            f"feature columns must be numeric, got {[(c, str(df[c].dtype)) for c in non_numeric]}",
            fix_data,
        )
    X = df[features].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(X)
    if bad.any():
        counts = {f: int(n) for f, n in zip(features, bad.sum(axis=0), strict=True) if n}
        raise InputError(
            f"features contain NaN/inf values {counts}",
            "impute or drop those rows upstream, or fail the data-validation gate",
        )

    y_raw = df[label]
    try:
        y = y_raw.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"label '{label}' must be 0/1, got dtype {y_raw.dtype}", fix_data) from None
    values = set(np.unique(y).tolist())
    if not values <= {0.0, 1.0}:
        shown = sorted(values - {0.0, 1.0})[:5]
        raise InputError(f"label '{label}' must be 0/1, found values {shown}", fix_data)
    if len(values) < 2:
        raise InputError(
            f"label '{label}' has a single class ({int(next(iter(values)))}); cannot train a classifier",
            fix_data,
        )
    try:
        cid = df[id_col].to_numpy(dtype=np.int64)
    except (TypeError, ValueError):
        raise InputError(f"{id_col} must be an integer column", fix_data) from None
    return X.astype(np.float32), y.astype(np.float32), cid


def split_train_val(customer_id: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean validation mask: a stable hash of (customer_id, seed), so the same customer
    stays on the same side across dataset versions; falls back to a seeded permutation if the
    hash split leaves one side empty (tiny data sets)."""
    with np.errstate(over="ignore"):
        z = customer_id.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    val = (z % np.uint64(1_000_000)).astype(np.float64) < val_fraction * 1_000_000
    n = len(customer_id)
    if 0 < val.sum() < n:
        return val
    rng = np.random.default_rng(seed)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    val = np.zeros(n, dtype=bool)
    val[rng.permutation(n)[:n_val]] = True
    return val


# --------------------------------------------------------------------------- model


class ChurnMLP(nn.Module):
    """MLP on raw features: standardisation lives in buffers, forward returns P(class 1)."""

    def __init__(self, n_features: int, hidden: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("feature_std", torch.as_tensor(std, dtype=torch.float32))
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.feature_mean) / self.feature_std).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Rank-based (Mann-Whitney) ROC AUC with average ranks for ties; NaN if one class."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    p_sorted = np.asarray(p)[order]
    ranks = np.empty(len(p), dtype=np.float64)
    # average rank per group of tied scores
    _, first_idx, counts = np.unique(p_sorted, return_index=True, return_counts=True)
    avg = first_idx + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    p = p.astype(np.float64)
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    return {
        "val_accuracy": float(((p >= 0.5) == (y >= 0.5)).mean()),
        "val_auc": roc_auc(y, p),
        "val_logloss": float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean()),
        "val_positive_rate": float(y.mean()),
        "val_predicted_positive_rate": float((p >= 0.5).mean()),
    }


# --------------------------------------------------------------------------- runtime


def setup_determinism(seed: int, device: torch.device) -> dict:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return {
        "seed": seed,
        "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG") if device.type == "cuda" else None,
    }


def nvidia_driver_version() -> str | None:
    try:
        import pynvml  # provided by nvidia-ml-py (GPU image only)

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - not installed or no driver
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            return out.splitlines()[0].strip() if out else None
        except Exception:  # noqa: BLE001
            return None
    return None


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_runtime(device: torch.device, determinism: dict, cfg: dict) -> dict:
    cuda = device.type == "cuda"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rt = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model_name(),
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "driver_version": nvidia_driver_version() if torch.cuda.is_available() or shutil.which("nvidia-smi") else None,
        "cuda_version": torch.version.cuda,
        "cudnn_version": str(cudnn) if cudnn else None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "amp_dtype": "bfloat16" if cuda else None,
        "determinism": determinism,
        "image_digest": os.environ.get("MLOPS_IMAGE_DIGEST") or "local",
    }
    if cuda:
        props = torch.cuda.get_device_properties(device)
        rt["gpu_total_memory_bytes"] = int(props.total_memory)
        rt["gpu_compute_capability"] = f"{props.major}.{props.minor}"
    try:
        import mlflow

        rt["mlflow_version"] = mlflow.__version__
    except Exception:  # noqa: BLE001
        rt["mlflow_version"] = None
    return rt


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "config device=cuda but CUDA is not available",
            "schedule the pod on a GPU node (nvidia.com/gpu limit) or use device=auto",
        )
    if requested == "cpu":
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- training


def train(cfg: dict, X: np.ndarray, y: np.ndarray, val_mask: np.ndarray, device: torch.device, log_epoch):
    cuda = device.type == "cuda"
    Xtr, ytr = X[~val_mask], y[~val_mask]
    Xva, yva = X[val_mask], y[val_mask]
    mean = Xtr.mean(axis=0, dtype=np.float64)
    std = Xtr.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)

    model = ChurnMLP(X.shape[1], cfg["hidden"], mean, std).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    loss_fn = nn.BCEWithLogitsLoss()

    # Whole dataset resident on the device; batches are index gathers on the device.
    xt = torch.from_numpy(Xtr).to(device)
    yt = torch.from_numpy(ytr).to(device)
    xv = torch.from_numpy(Xva).to(device)
    yv = torch.from_numpy(yva).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg["seed"])
    n = xt.shape[0]
    bs = cfg["batch_size"]

    def autocast():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    history = []
    for epoch in range(1, cfg["epochs"] + 1):
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        total = torch.zeros((), device=device)
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            xb, yb = xt.index_select(0, idx), yt.index_select(0, idx)
            with autocast():
                loss = loss_fn(model.logits(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().float() * idx.numel()
        model.eval()
        with torch.no_grad(), autocast():
            val_loss = loss_fn(model.logits(xv).float(), yv)
        train_loss = (total / n).item()  # one host sync per epoch
        val_loss = val_loss.item()
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise InputError(
                f"loss diverged to {train_loss} at epoch {epoch}",
                "lower 'lr' in MLOPS_TRAINING_CONFIG or check feature scales",
            )
        history.append((epoch, train_loss, val_loss))
        log_epoch(epoch, train_loss, val_loss)
    if cuda:
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():  # final metrics in float32
        p_val = model(xv).float().cpu().numpy()
    metrics = binary_metrics(yva, p_val)
    metrics["train_seconds"] = train_seconds
    metrics["samples_per_s"] = n * cfg["epochs"] / train_seconds if train_seconds > 0 else float("nan")
    metrics["final_train_loss"] = history[-1][1]
    metrics["final_val_loss"] = history[-1][2]
    extra = {}
    if cuda:
        extra["gpu_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return model, metrics, extra


# --------------------------------------------------------------------------- main


def run(ctx: TrainingContext) -> dict:
    """Train, evaluate and log inside the active run; returns the result JSON."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    run_id = mlflow.active_run().info.run_id
    log(f"mlflow run {run_id} started")
    cfg = parse_config(ctx)
    torch.set_num_threads(cfg["num_threads"])
    with contextlib.suppress(RuntimeError):  # already set / parallel work already started
        torch.set_num_interop_threads(1)
    device = pick_device(cfg["device"])
    determinism = setup_determinism(cfg["seed"], device)
    ctx.log_params(cfg)  # the config the context logged stays; the defaults are added
    mlflow.log_dict(cfg, "config/training_config.json")

    X, y, cid = load_training_set(ctx, cfg)
    val_mask = split_train_val(cid, cfg["val_fraction"], cfg["seed"])
    n_train, n_val = int((~val_mask).sum()), int(val_mask.sum())
    split_digest = hashlib.sha256(np.packbits(val_mask).tobytes()).hexdigest()[:16]
    ctx.log_params({"n_rows": len(y), "n_train": n_train, "n_val": n_val, "split_digest": split_digest})
    log(f"data: {len(y)} rows, {n_train} train / {n_val} val, device={device.type}")

    def log_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        mlflow.log_metrics({"train_loss": train_loss, "val_loss": val_loss}, step=epoch)
        log(f"epoch {epoch}/{cfg['epochs']} train_loss={train_loss:.4f} val_loss={val_loss:.4f}")

    model, metrics, extra = train(cfg, X, y, val_mask, device, log_epoch)
    finite = ctx.log_metrics(metrics)

    runtime = collect_runtime(device, determinism, cfg)
    runtime.update(extra)
    runtime["train_seconds"] = metrics["train_seconds"]
    runtime["samples_per_s"] = metrics["samples_per_s"]
    runtime["n_train"], runtime["n_val"] = n_train, n_val
    mlflow.log_dict(runtime, "runtime/runtime.json")
    mlflow.set_tags(
        {
            "mlops.runtime.device": runtime["device"],
            "mlops.runtime.device_name": runtime["device_name"],
            "mlops.runtime.cuda_available": str(runtime["cuda_available"]).lower(),
            "mlops.runtime.driver_version": str(runtime["driver_version"]),
            "mlops.runtime.cuda_version": str(runtime["cuda_version"]),
            "mlops.runtime.cudnn_version": str(runtime["cudnn_version"]),
            "mlops.runtime.torch_version": runtime["torch_version"],
            "mlops.runtime.python_version": runtime["python_version"],
            "mlops.runtime.deterministic": str(determinism["use_deterministic_algorithms"]).lower(),
            "mlops.runtime.samples_per_s": f"{metrics['samples_per_s']:.1f}",
        }
    )

    # Log a float32 CPU copy in the safe torch.export ("pt2") format: the loader needs no
    # access to this module's ChurnMLP class and no pickle; its pyfunc returns P(label == 1).
    cpu_model = copy.deepcopy(model).to("cpu").float().eval()
    example = X[: min(5, len(X))].copy()
    if len(example) < 2:  # a batch of 1 would freeze the batch dimension in the export
        example = np.repeat(X[:1], 2, axis=0)
    # Explicit TensorSpec signature: pt2 export requires it, and mlflow-skinny's
    # infer_signature() needs scipy (it falls back to an untyped schema without it).
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, X.shape[1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]),
    )
    base_torch = torch.__version__.split("+")[0]
    model_uri = ctx.log_model(
        cpu_model,
        flavor="pytorch",
        input_example=example,
        signature=signature,
        serialization_format="pt2",
        pip_requirements=[
            f"torch=={base_torch}",
            f"mlflow=={mlflow.__version__}",
            f"numpy=={np.__version__}",
            f"pandas=={pd.__version__}",
        ],
        metadata={"model_name": cfg["model_name"], "output": "probability of label == 1"},
    )
    return {
        "status": "FINISHED",
        "run_id": run_id,
        "experiment_id": mlflow.active_run().info.experiment_id,
        "model_uri": model_uri,
        "run_model_uri": f"runs:/{run_id}/model",
        "model_name": cfg["model_name"],
        "features": cfg["features"],
        "label": cfg["label"],
        "metrics": finite,
        "runtime": runtime,
        "n_train": n_train,
        "n_val": n_val,
    }


def main() -> int:
    try:
        ctx = context()
    except TrainingInputError as exc:  # before a run exists: nothing to mark FAILED
        print(failure_line(exc), file=sys.stderr, flush=True)
        return exit_code(exc)
    try:
        with ctx.start_run(log_system_metrics=True):
            result = run(ctx)
    except BaseException as exc:  # noqa: BLE001 - every failure ends the run (start_run) and maps to an exit code
        report_failure(exc)
        ctx.write_result({"status": "FAILED", "error": failure_line(exc)})
        return exit_code(exc)
    ctx.write_result(result)
    m, runtime = result["metrics"], result["runtime"]
    print(
        f"TRAINING DONE run_id={result['run_id']} val_auc={m.get('val_auc', float('nan')):.4f} "
        f"val_accuracy={m['val_accuracy']:.4f} samples/s={m['samples_per_s']:.0f} "
        f"device={runtime['device']} model_uri={result['model_uri']}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
