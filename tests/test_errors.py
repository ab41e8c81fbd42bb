"""Bad input: one clear line naming the key, a non-zero exit, and no run directory left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.data.synthetic import write_dataset
from tests.conftest import FAST_RUN

BAD_VALUES = [
    ("data.batch_size=0", "data.batch_size"),
    ("data.batch_size=-5", "data.batch_size"),
    ("model.optimizer.lr=0", "model.optimizer.lr"),
    ("model.optimizer.lr=-0.1", "model.optimizer.lr"),
    ("model.optimizer.lr=abc", "model.optimizer.lr"),
    ("model.activation=swish", "model.activation"),
    ("model.hidden_sizes=[]", "model.hidden_sizes"),
    ("model.dropout=1.0", "model.dropout"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("data.val_size=600", "data.val_size"),
    ("data.batch_size=100000", "data.batch_size"),
]


def assert_clean_failure(result, key: str, outputs: Path) -> None:
    assert result.code != 0
    assert len(result.error_lines) == 1, result.err
    assert key in result.error_lines[0]
    assert "Traceback" not in result.err
    runs = outputs / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed run must not leave a run directory"


@pytest.mark.parametrize(("override", "key"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_invalid_values_fail_before_training(cli, mnist_dir: Path, tmp_path: Path, override: str, key: str) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, override)
    assert_clean_failure(result, key, tmp_path / "outputs")
    assert "Epoch" not in result.out


def test_gpu_requested_without_gpu(cli, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli(f"paths.data_dir={mnist_dir}", "trainer.accelerator=gpu")
    assert_clean_failure(result, "trainer.accelerator", tmp_path / "outputs")
    assert "no CUDA GPU visible; use trainer.accelerator=cpu or auto" in result.error_lines[0]


def test_missing_data_names_files_and_fix(cli, tmp_path: Path) -> None:
    result = cli(f"paths.data_dir={tmp_path / 'empty'}")
    assert_clean_failure(result, "train-images-idx3-ubyte", tmp_path / "outputs")
    assert "paths.data_dir" in result.error_lines[0]


def test_gpu_error_from_the_real_command_line(run_train, mnist_dir: Path, tmp_path: Path) -> None:
    """The same check through a real interpreter: exit status and stderr as a user sees them."""
    result = run_train(f"paths.data_dir={mnist_dir}", "trainer.accelerator=gpu")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: trainer.accelerator=gpu: no CUDA GPU visible; use trainer.accelerator=cpu or auto"
    )
    assert not (tmp_path / "outputs" / "runs").exists() or not any((tmp_path / "outputs" / "runs").iterdir())


def test_full_trace_on_request(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match=r"data\.batch_size"):
        cli("data.batch_size=0")


# --- The rest of the bad-input matrix: Hydra's own errors, data files, checkpoints, resume, devices. ---

HYDRA_ERRORS = [
    ("model=foo", "model/foo"),
    ("model.hiden=3", "model.hiden"),
    ("model/optimizer=foo", "model/optimizer"),
]


@pytest.mark.parametrize(("override", "key"), HYDRA_ERRORS, ids=[o for o, _ in HYDRA_ERRORS])
def test_hydra_rejects_unknown_options_and_keys(cli, mnist_dir: Path, tmp_path: Path, override: str, key: str) -> None:
    """Hydra's own message is already clear: first line names the option/key, no traceback, no run dir."""
    result = cli(f"paths.data_dir={mnist_dir}", override)
    assert result.code != 0
    assert key in result.err.strip().splitlines()[0], result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "outputs" / "runs").exists()


def test_unknown_optimizer_class(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, "model.optimizer._target_=torch.optim.Foo")
    assert_clean_failure(result, "model", tmp_path / "outputs")
    assert "torch.optim.Foo" in result.error_lines[0]


@pytest.fixture
def damaged_data(tmp_path: Path) -> Path:
    """Two data dirs: a truncated .gz download and a plain IDX file cut short."""
    truncated_gz = write_dataset(tmp_path / "gz" / "MNIST" / "raw", gz=True)
    archive = truncated_gz / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    cut_idx = write_dataset(tmp_path / "idx" / "MNIST" / "raw", gz=False)
    images = cut_idx / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    return tmp_path


@pytest.mark.parametrize(("folder", "named"), [("gz", "train-images-idx3-ubyte.gz"), ("idx", "t10k-images-idx3-ubyte")])
def test_truncated_or_corrupt_data_files(cli, damaged_data: Path, tmp_path: Path, folder: str, named: str) -> None:
    result = cli(f"paths.data_dir={damaged_data / folder}", *FAST_RUN)
    assert_clean_failure(result, named, tmp_path / "outputs")
    assert "truncated or corrupt" in result.error_lines[0]


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A weights-only checkpoint of a 784-16-10 MLP (what evaluate/predict and the mismatch check read)."""
    from experiments.models.classifier import MNISTClassifier

    model = MNISTClassifier(hidden_sizes=[16])
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.fixture
def corrupt_checkpoint(tiny_checkpoint: Path) -> Path:
    path = tiny_checkpoint.with_name("corrupt.ckpt")
    path.write_bytes(tiny_checkpoint.read_bytes()[:500])
    return path


def test_ckpt_path_pointing_nowhere(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, f"ckpt_path={tmp_path / 'nope.ckpt'}")
    assert_clean_failure(result, "nope.ckpt", tmp_path / "outputs")


def test_corrupt_checkpoint(cli, mnist_dir: Path, tmp_path: Path, corrupt_checkpoint: Path) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, f"ckpt_path={corrupt_checkpoint}")
    assert_clean_failure(result, str(corrupt_checkpoint), tmp_path / "outputs")
    assert "truncated or corrupt" in result.error_lines[0]


def test_checkpoint_of_another_model_config(cli, mnist_dir: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, f"ckpt_path={tiny_checkpoint}")
    assert_clean_failure(result, str(tiny_checkpoint), tmp_path / "outputs")
    assert "does not match the model config" in result.error_lines[0]
    assert "net.1.weight is [16, 784] in the checkpoint but [128, 784] in the model" in result.error_lines[0]


def test_ckpt_path_last_without_resume(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, "ckpt_path=last")
    assert_clean_failure(result, "ckpt_path=last", tmp_path / "outputs")


def test_resume_of_a_folder_that_is_no_run(cli, mnist_dir: Path, tmp_path: Path) -> None:
    not_a_run = tmp_path / "somewhere"
    not_a_run.mkdir()
    result = cli(f"paths.data_dir={mnist_dir}", f"resume={not_a_run}")
    assert_clean_failure(result, f"resume={not_a_run}", tmp_path / "outputs")
    assert list(not_a_run.iterdir()) == [], "nothing may be written into what resume points at"


def test_devices_beyond_what_the_strategy_allows(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, "trainer.devices=3", "trainer.strategy=single_device")
    assert_clean_failure(result, "trainer", tmp_path / "outputs")


# --- evaluate and predict: the same one-line errors, exit status 1, nothing written. ---


def run_tool(module: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from importlib import import_module

    with pytest.raises(SystemExit) as stopped:
        import_module(f"experiments.commands.{module}").main(args)
    captured = capsys.readouterr()
    return int(stopped.value.code or 0), captured.out, captured.err


TOOL_ERRORS = [
    ("evaluate", [], "ckpt_path is required"),
    ("evaluate", ["ckpt_path={tmp}/missing"], "missing"),
    ("evaluate", ["ckpt_path={corrupt}"], "corrupt.ckpt"),
    ("evaluate", ["ckpt_path={tiny}", "batch_size=0"], "batch_size"),
    ("evaluate", ["ckpt=x"], "'ckpt=x'"),
    ("predict", ["ckpt_path={tiny}"], "inputs is required"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/notes.txt"], "notes.txt"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/empty_folder"], "empty_folder"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/notes.txt", "top_k=0"], "top_k"),
]


@pytest.mark.parametrize(
    ("module", "args", "named"), TOOL_ERRORS, ids=[f"{m}:{' '.join(a)}" for m, a, _ in TOOL_ERRORS]
)
def test_evaluate_and_predict_errors(
    capsys, tmp_path: Path, tiny_checkpoint: Path, corrupt_checkpoint: Path, module: str, args: list[str], named: str
) -> None:
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "empty_folder").mkdir()
    values = {"tmp": tmp_path, "tiny": tiny_checkpoint, "corrupt": corrupt_checkpoint}
    code, out, err = run_tool(module, [a.format(**values) for a in args], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert named.format(**values) in lines[0]
    assert out == ""
