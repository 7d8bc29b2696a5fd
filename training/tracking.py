"""MLflow logging: params, metrics, plots and models; registration; the alias ``champion``.

Import this module only inside functions (``training.train`` and ``training.promotion`` do): it
imports MLflow, which is slow to import and which the live agents never need.

Registered models (training registers a new version of each; the alias ``champion`` moves only when
a version is promoted, see ``training.promotion``):

- ``ev-twin``: the whole model directory as a pyfunc (``Scorer`` inside); input = a DataFrame of
  ``FEATURE_NAMES``, output = the five score columns. Its version names the model: ``ev-twin@<n>``.
- ``ev-twin-rul``, ``ev-twin-failure`` (XGBoost flavour) and ``ev-twin-anomaly`` (the selected
  detector: XGBoost or scikit-learn IsolationForest), each with a signature and an input example.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():  # MLflow warns about its own type hints while importing
    warnings.simplefilter("ignore")
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    import mlflow.xgboost
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

from models.features import FEATURE_NAMES
from models.scorer import ANOMALY_XGB_FILE, FAILURE_FILE, IFOREST_FILE, RUL_FILE
from training.errors import TrainingError

EXPERIMENT = "ev-twin"
RETRAIN_EXPERIMENT = "ev-twin-retrain"
"""Experiment of the gate decisions of ``evtwin retrain`` (one run per decision)."""
MODEL_NAME = "ev-twin"
ALIAS = "champion"
_XGB = "xgboost-cpu|xgboost"


@dataclass(frozen=True)
class LoggedRun:
    """What :func:`log_run` logged: the run, and the registered version of each model."""

    run_id: str
    version: str
    """``ev-twin@<n>``: the registered version of the whole model."""
    registered: dict[str, str]
    """Registered model name -> its new version (``ev-twin``, ``ev-twin-rul``, ...)."""


class ScorerModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """pyfunc wrapper: loads ``models.scorer.Scorer`` from the logged model directory."""

    def load_context(self, context: Any) -> None:
        from models.scorer import Scorer

        self.scorer = Scorer.load(Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Scores of a DataFrame with the ``FEATURE_NAMES`` columns."""
        X = model_input[list(FEATURE_NAMES)].to_numpy(dtype=np.float32)
        return pd.DataFrame(self.scorer.score(X))


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own warnings (deprecations, schema hints) are not ours to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _experiment(uri: str, name: str = EXPERIMENT) -> str:
    """Point MLflow at ``uri`` and return the id of experiment ``name`` (artifacts beside a SQLite
    file)."""
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def _requirements(*packages: str) -> list[str]:
    """Pinned pip requirements of the installed ``packages``.

    Given explicitly, so MLflow does not infer them by loading each model in a subprocess (seconds
    per model, minutes on a loaded machine).
    """
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for spec in packages:  # "a|b": the first installed distribution (xgboost-cpu or xgboost)
        names = spec.split("|")
        for name in names:
            try:
                pins.append(f"{name}=={version(name)}")
                break
            except PackageNotFoundError:
                continue
        else:
            pins.append(names[-1])
    return pins


def _register(model_uri: str, name: str) -> str:
    """Register ``model_uri`` as ``name`` (no alias: promotion sets it); return the version."""
    return str(mlflow.register_model(model_uri, name).version)


def _log_components(objects: dict[str, Any], detector: str, example: pd.DataFrame) -> dict[str, str]:
    """Log the RUL, failure and anomaly models in their own flavours (signature + input example).

    Returns:
        Part name (rul, failure, anomaly) -> logged model URI.
    """
    X = example.to_numpy(dtype=np.float32)
    uris: dict[str, str] = {}
    parts = [("rul", objects[RUL_FILE]), ("failure", objects[FAILURE_FILE])]
    if detector == "xgb":
        parts.append(("anomaly", objects[ANOMALY_XGB_FILE]))
    for name, model in parts:
        sig = infer_signature(example, np.asarray(model.predict(X)))
        info = mlflow.xgboost.log_model(model, name=name, signature=sig, input_example=example.head(5),
                                        model_format="ubj", pip_requirements=_requirements(_XGB))
        uris[name] = info.model_uri
    if detector != "xgb":
        bundle = objects[IFOREST_FILE]
        Xf = example.fillna(pd.Series(bundle["fill"], index=example.columns))
        sig = infer_signature(Xf, bundle["model"].score_samples(Xf.to_numpy()))
        # skops (MLflow's default format) refuses the trees' node storage unless told it is trusted:
        # it is, we just fitted it.
        info = mlflow.sklearn.log_model(bundle["model"], name="anomaly", signature=sig, input_example=Xf.head(5),
                                        pip_requirements=_requirements("scikit-learn"),
                                        skops_trusted_types=["sklearn.tree._tree.Tree"])
        uris["anomaly"] = info.model_uri
    return uris


def log_run(tracking_uri: str, objects: dict[str, Any], card: dict[str, Any], metrics: dict[str, float],
            staged_dir: Path, plot_dir: Path | None, example: np.ndarray) -> LoggedRun:
    """Log one training run and register its models (a new version of each, no alias).

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...`` or a server URL).
        objects: The model objects (file name -> object) as saved.
        card: Model card (params come from it).
        metrics: Held-out metrics (non-finite values are skipped).
        staged_dir: A complete model directory (``models.registry`` layout) logged as the pyfunc.
        plot_dir: PNG plots to log (or None).
        example: A few feature rows (input example and signature).

    Returns:
        The run id and the registered versions.

    Raises:
        TrainingError: If MLflow fails (the message names the tracking URI).
    """
    try:
        with _quiet():
            return _log_run(tracking_uri, objects, card, metrics, staged_dir, plot_dir, example)
    except TrainingError:
        raise
    except Exception as exc:
        raise TrainingError(f"MLflow logging to {tracking_uri} failed: {exc}") from exc


def _log_run(tracking_uri: str, objects: dict[str, Any], card: dict[str, Any], metrics: dict[str, float],
             staged_dir: Path, plot_dir: Path | None, example: np.ndarray) -> LoggedRun:
    experiment_id = _experiment(tracking_uri)
    frame = pd.DataFrame(example, columns=list(FEATURE_NAMES))
    params = {f"hp_{k}": v for k, v in card["hyperparameters"].items()}
    params.update({f"dataset_{k}": v for k, v in card["dataset"].items()})
    params.update(split_by=card["split"]["by"], anomaly_detector=card["anomaly_detector"],
                  rul_transform=card["rul_transform"], n_features=len(FEATURE_NAMES))
    with mlflow.start_run(experiment_id=experiment_id, run_name="ev-twin-quick" if card["quick"] else "ev-twin") as run:
        mlflow.log_params(params)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(card, "model_card.json")
        if plot_dir is not None:
            mlflow.log_artifacts(str(plot_dir), artifact_path="plots")
        uris = _log_components(objects, card["anomaly_detector"], frame)
        sig = infer_signature(frame, _staged_scores(staged_dir, frame))
        info = mlflow.pyfunc.log_model(name="ev-twin", python_model=ScorerModel(),
                                artifacts={"model_dir": str(staged_dir)}, signature=sig,
                                input_example=frame.head(5),
                                pip_requirements=_requirements(_XGB, "scikit-learn", "numpy", "pandas", "joblib"))
        run_id = run.info.run_id
    registered = {MODEL_NAME: _register(info.model_uri, MODEL_NAME)}
    for part, uri in uris.items():
        registered[f"{MODEL_NAME}-{part}"] = _register(uri, f"{MODEL_NAME}-{part}")
    return LoggedRun(run_id, f"{MODEL_NAME}@{registered[MODEL_NAME]}", registered)


def _client(tracking_uri: str) -> Any:
    """A client of the registry at ``tracking_uri``; refuses a SQLite file that does not exist (it
    would create an empty store)."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise TrainingError(f"no MLflow store at {tracking_uri}")
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def set_champion(tracking_uri: str, registered: Mapping[str, str], run_id: str | None) -> None:
    """Point the alias ``champion`` of each registered model at the version in ``registered``.

    Args:
        tracking_uri: The MLflow tracking URI.
        registered: Registered model name -> version (as :class:`LoggedRun` records it).
        run_id: The run that logged them: a version from another run (another tracking server than
            the one the model was trained against) is refused.

    Raises:
        TrainingError: If MLflow fails or a version is not the one ``run_id`` logged; no alias moved.
    """
    try:
        with _quiet():
            client = _client(tracking_uri)
            for name, version in registered.items():
                found = client.get_model_version(name, str(version)).run_id
                if run_id and found != run_id:
                    raise TrainingError(f"{name} version {version} at {tracking_uri} comes from run "
                                        f"{found}, not {run_id}: another tracking server?")
            for name, version in registered.items():
                client.set_registered_model_alias(name, ALIAS, str(version))
    except TrainingError:
        raise
    except Exception as exc:
        raise TrainingError(f"MLflow at {tracking_uri}: {exc}") from exc


def clear_champion(tracking_uri: str, registered: Mapping[str, str]) -> list[str]:
    """Remove the alias ``champion`` from the registered models where it points at these versions.

    Returns:
        The models it was removed from.

    Raises:
        TrainingError: If MLflow fails.
    """
    removed = []
    try:
        with _quiet():
            client = _client(tracking_uri)
            for name, version in registered.items():
                try:
                    aliased = client.get_model_version_by_alias(name, ALIAS).version
                except MlflowException:
                    continue  # no such alias (or model)
                if str(aliased) == str(version):
                    client.delete_registered_model_alias(name, ALIAS)
                    removed.append(name)
    except TrainingError:
        raise
    except Exception as exc:
        raise TrainingError(f"MLflow at {tracking_uri}: {exc}") from exc
    return removed


def log_decision(tracking_uri: str, decision: Mapping[str, Any]) -> str:
    """Log one gate decision of ``evtwin retrain`` as a run of experiment :data:`RETRAIN_EXPERIMENT`.

    Tags ``decision``, ``candidate``, ``champion``; params: the gate's thresholds and row counts;
    metrics ``candidate.<name>`` and ``champion.<name>`` (finite values); ``decision.json``: the
    whole summary (``training.retrain.RetrainResult.as_dict``).

    Returns:
        The run id.

    Raises:
        TrainingError: If MLflow fails.
    """
    try:
        with _quiet():
            experiment_id = _experiment(tracking_uri, RETRAIN_EXPERIMENT)
            candidate = decision["candidate"]
            champion = decision.get("champion") or {}
            name = f"{decision['decision']} {candidate['version']} vs {champion.get('version') or 'none'}"
            with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
                mlflow.set_tags({"decision": decision["decision"], "candidate": candidate["version"],
                                 "candidate_model_version": candidate.get("model_version") or "",
                                 "champion": champion.get("version") or "none",
                                 "reason": str(decision.get("reason", ""))[:5000]})
                params = {f"gate_{k}": (",".join(v) if isinstance(v, list) else v)
                          for k, v in decision.get("thresholds", {}).items()}
                params.update({f"rows_{k}": v for k, v in decision.get("rows", {}).items()})
                mlflow.log_params(params)
                values = {}
                for who, block in (("candidate", candidate), ("champion", champion)):
                    for key, value in (block.get("metrics") or {}).items():
                        if value is not None and np.isfinite(value):
                            values[f"{who}.{key}"] = float(value)
                mlflow.log_metrics(values)
                mlflow.log_dict(dict(decision), "decision.json")
                return str(run.info.run_id)
    except Exception as exc:
        raise TrainingError(f"MLflow at {tracking_uri}: {exc}") from exc


def _staged_scores(staged_dir: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The staged model's outputs on ``frame`` (for the pyfunc signature)."""
    from models.scorer import Scorer

    scores = Scorer.load(staged_dir).score(frame.to_numpy(dtype=np.float32))
    return pd.DataFrame(scores)


__all__ = ["ALIAS", "EXPERIMENT", "LoggedRun", "MODEL_NAME", "RETRAIN_EXPERIMENT", "ScorerModel", "clear_champion",
           "log_decision", "log_run", "set_champion"]
