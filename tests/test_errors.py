"""Bad input: one clear line naming the key, a non-zero exit, and no run directory left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.data.synthetic import write_dataset
from tests.conftest import FAST_RUN

# (overrides separated by spaces, the key the error line must name). Values of the wrong type are Hydra's
# to refuse (HYDRA_ERRORS below); these have the right type and are refused by experiments.config.schema
# before torch is imported, except the last three.
BAD_VALUES = [
    ("seed=-1", "seed"),
    ("seed=4294967296", "seed"),
    ("test_figures=-1", "test_figures"),
    # OmegaConf reads yes/on/1 as true; the command line must say true or false.
    ("train=yes", "train"),
    ("model.compile=yes", "model.compile"),
    ("data.normalize=1", "data.normalize"),
    ("trainer.detect_anomaly=on", "trainer.detect_anomaly"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.batch_size=-5", "data.batch_size"),
    ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("data.val_size=-1", "data.val_size"),
    ("data.train_size=0", "data.train_size"),
    ("data.num_workers=-1", "data.num_workers"),
    ("data.std=0", "data.std"),
    ("data.std=nan", "data.std"),
    ("data.mean=inf", "data.mean"),
    ("data.loader=fast", "data.loader"),
    ("data.dataset=cifar10", "data.dataset"),
    ("+data.foo=1", "data.foo"),
    ("model.activation=swish", "model.activation"),
    ("model.hidden_sizes=[]", "model.hidden_sizes"),
    ("model.hidden_sizes=[128,0]", "model.hidden_sizes"),
    ("model.hidden_sizes=[300000000]", "model.hidden_sizes"),
    ("model.dropout=1.0", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"),
    ("model.dropout=nan", "model.dropout"),
    ("model.input_size=0", "model.input_size"),
    ("model.num_classes=1", "model.num_classes"),
    ("model.l1=-1", "model.l1"),
    ("model.l1=nan", "model.l1"),
    ("model.net=cnn", "model.net"),
    ("model=linear model.input_size=0", "model.input_size"),
    ("model=cnn model.activation=swish", "model.activation"),
    ("model=cnn model.channels=[6]", "model.channels"),
    ("model=cnn model.hidden_sizes=[]", "model.hidden_sizes"),
    ("model.loss.label_smoothing=1", "model.loss.label_smoothing"),
    ("model.loss.label_smoothing=-0.1", "model.loss.label_smoothing"),
    ("model/loss=focal model.loss.gamma=-1", "model.loss.gamma"),
    ("model/loss=focal model.loss.gamma=inf", "model.loss.gamma"),
    ("+model.loss.foo=1", "model.loss.foo"),
    ("model.optimizer.lr=0", "model.optimizer.lr"),
    ("model.optimizer.lr=-0.1", "model.optimizer.lr"),
    ("model.optimizer.lr=nan", "model.optimizer.lr"),
    ("model.optimizer.lr=inf", "model.optimizer.lr"),
    ("model.optimizer.lr=1e300", "model.optimizer.lr"),
    ("model.optimizer.weight_decay=-1", "model.optimizer.weight_decay"),
    ("model.optimizer.weight_decay=nan", "model.optimizer.weight_decay"),
    ("model.optimizer.momentum=-0.5", "model.optimizer.momentum"),
    ("model.optimizer.momentum=nan", "model.optimizer.momentum"),
    ("model.optimizer.nesterov=true model.optimizer.momentum=0", "model.optimizer.nesterov"),
    ("model/optimizer=adam model.optimizer.betas=[0.9,1.5]", "model.optimizer.betas"),
    ("model/optimizer=adamw model.optimizer.betas=[0.9]", "model.optimizer.betas"),
    ("model/optimizer=adam model.optimizer.eps=0", "model.optimizer.eps"),
    ("model/optimizer=rmsprop model.optimizer.alpha=1.5", "model.optimizer.alpha"),
    ("model/optimizer=rmsprop model.optimizer.momentum=-1", "model.optimizer.momentum"),
    ("model/optimizer=adagrad model.optimizer.eps=inf", "model.optimizer.eps"),
    ("+model.optimizer.foo=1", "model.optimizer.foo"),
    ("model.scheduler.pct_start=5", "model.scheduler.pct_start"),
    ("model.scheduler.pct_start=-0.1", "model.scheduler.pct_start"),
    ("model.scheduler.max_lr=inf", "model.scheduler.max_lr"),
    ("model/scheduler=cosine model.scheduler.eta_min=-1", "model.scheduler.eta_min"),
    ("model/scheduler=cosine model.scheduler.eta_min=nan", "model.scheduler.eta_min"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.max_epochs=-2", "trainer.max_epochs"),
    ("trainer.max_epochs=-1", "trainer.max_epochs"),  # no max_steps or max_time: it would train forever
    ("trainer.max_steps=-2", "trainer.max_steps"),
    ("trainer.min_epochs=-1", "trainer.min_epochs"),
    ("trainer.max_time=1h", "trainer.max_time"),
    ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch"),
    ("trainer.log_every_n_steps=-1", "trainer.log_every_n_steps"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val"),
    ("trainer.gradient_clip_val=nan", "trainer.gradient_clip_val"),
    ("trainer.gradient_clip_algorithm=sideways", "trainer.gradient_clip_algorithm"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches"),
    ("trainer.limit_val_batches=-1", "trainer.limit_val_batches"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval"),
    ("trainer.num_sanity_val_steps=-2", "trainer.num_sanity_val_steps"),
    ("trainer.fast_dev_run=-1", "trainer.fast_dev_run"),
    ("trainer.overfit_batches=2.5", "trainer.overfit_batches"),
    ("trainer.devices=0", "trainer.devices"),
    ("trainer.devices=[]", "trainer.devices"),
    ("trainer.deterministic=maybe", "trainer.deterministic"),
    ("trainer.precision=1.5", "trainer.precision"),
    # Checked later: against the dataset's size by the DataModule, and by Lightning for a key added to trainer.
    ("data.val_size=600", "data.val_size"),
    ("data.train_size=501", "data.train_size"),
    ("data.batch_size=100000", "data.batch_size"),
    ("+trainer.foo=1", "trainer.foo"),
]


def assert_clean_failure(result, key: str, outputs: Path) -> None:
    assert result.code != 0
    assert len(result.error_lines) == 1, result.err
    assert key in result.error_lines[0]
    assert "Traceback" not in result.err
    runs = outputs / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed run must not leave a run directory"


@pytest.mark.parametrize(("overrides", "key"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_invalid_values_fail_before_training(cli, mnist_dir: Path, tmp_path: Path, overrides: str, key: str) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, *overrides.split())
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
    ("model=foo", "model=foo"),
    ("model.hiden=3", "model.hiden"),
    ("model/optimizer=foo", "model/optimizer"),
    ("model/loss=foo", "model/loss"),
    # Unknown keys and values of the wrong type: the schema's types, enforced while Hydra composes.
    ("trainer.max_epoch=3", "trainer.max_epoch"),
    ("data.batchsize=3", "data.batchsize"),
    ("+trainer.max_epochs=3", "trainer.max_epochs"),
    ("seed=abc", "seed"),
    ("seed=2.5", "seed"),
    ("train=maybe", "train"),
    ("test=abc", "test"),
    ("data.normalize=abc", "data.normalize"),
    ("data.mean=abc", "data.mean"),
    ("data.batch_size=2.5", "data.batch_size"),
    ("data.num_workers=true", "data.num_workers"),
    ("model.compile=maybe", "model.compile"),
    ("model.batch_norm=maybe", "model.batch_norm"),
    ("model.dropout=abc", "model.dropout"),
    ("model.hidden_sizes=[1.5]", "model.hidden_sizes"),
    ("model.hidden_sizes=128", "model.hidden_sizes"),
    ("model.optimizer.lr=abc", "model.optimizer.lr"),
    ("model.optimizer.nesterov=maybe", "model.optimizer.nesterov"),
    ("model.scheduler.cycle_momentum=abc", "model.scheduler.cycle_momentum"),
    ("trainer.max_epochs=abc", "trainer.max_epochs"),
    ("trainer.gradient_clip_val=abc", "trainer.gradient_clip_val"),
]


@pytest.mark.parametrize(("override", "key"), HYDRA_ERRORS, ids=[o for o, _ in HYDRA_ERRORS])
def test_hydra_rejects_unknown_options_and_keys(cli, mnist_dir: Path, tmp_path: Path, override: str, key: str) -> None:
    """One line naming the option/key (experiments.config.mistakes), no traceback, no run dir."""
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


# --- the commands: the same one-line errors, exit status 1, nothing written. ---


TOOL_ERRORS = [
    ("evaluate", [], "error: ckpt_path is required: ckpt_path=<run dir> or ckpt_path=<file.ckpt>"),
    ("evaluate", ["ckpt_path={tmp}/missing"], "missing"),
    ("evaluate", ["ckpt_path={corrupt}"], "corrupt.ckpt"),
    ("evaluate", ["ckpt_path={tiny}", "batch_size=0"], "batch_size"),
    ("evaluate", ["ckpt_path={tiny}", "which=first"], "which"),
    ("evaluate", ["ckpt_path={tiny}", "device=tpu"], "device"),
    ("predict", [], "ckpt_path is required"),
    ("predict", ["ckpt_path={tiny}"], "inputs is required"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/notes.txt"], "notes.txt"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/empty_folder"], "empty_folder"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/notes.txt", "top_k=0"], "top_k"),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/notes.txt", "invert=maybe"], "invert"),
    ("compare", [], "sweep_dir is required"),
    ("compare", ["sweep_dir={tmp}/nowhere"], "nowhere"),
    ("compare", ["sweep_dir={tmp}/empty_folder"], "no job directories"),
]


@pytest.mark.parametrize(
    ("module", "args", "named"), TOOL_ERRORS, ids=[f"{m}:{' '.join(a)}" for m, a, _ in TOOL_ERRORS]
)
def test_command_errors(
    command, tmp_path: Path, tiny_checkpoint: Path, corrupt_checkpoint: Path, module: str, args: list[str], named: str
) -> None:
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "empty_folder").mkdir()
    values = {"tmp": tmp_path, "tiny": tiny_checkpoint, "corrupt": corrupt_checkpoint}
    result = command(module, *[a.format(**values) for a in args])
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert named.format(**values) in lines[0]
    assert result.out == ""
    assert list(Path.cwd().iterdir()) == []


def test_command_unknown_key_is_one_line_with_the_near_key(command) -> None:
    result = command("evaluate", "ckpt=x")
    assert result.code == 1 and result.out == ""
    assert result.err == "error: ckpt is not a key of the config; did you mean ckpt_path?\n"


CONFIG_MISTAKES = [
    # Hydra's five lines ended in "To append to your config use +model.optimzer.lr=0.01": advice that adds the typo.
    ("model.optimzer.lr=0.01", "error: model.optimzer is not a key of model; did you mean model.optimizer?"),
    ("trainer.max_epoch=3", "error: trainer.max_epoch is not a key of trainer; did you mean trainer.max_epochs?"),
    ("loger=csv", "error: loger is not a key of the config; did you mean logger?"),
    ("model=mlpp", "error: model=mlpp is not an option of model (choose cnn | linear | mlp); did you mean model=mlp?"),
    (
        "model/optimizer=adamm",
        "error: model/optimizer=adamm is not an option of model/optimizer "
        "(choose adagrad | adam | adamw | rmsprop | sgd); did you mean model/optimizer=adam?",
    ),
    ("seed=abc", "error: seed=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ("model.zzz=1", "error: model.zzz is not a key of model; `--cfg job` lists the keys"),
    ("data.batch_size=[1", "error: cannot read the override 'data.batch_size=[1': "),
]


@pytest.mark.parametrize(("override", "line"), CONFIG_MISTAKES, ids=[o for o, _ in CONFIG_MISTAKES])
def test_config_mistakes_are_one_line_with_a_suggestion(cli, tmp_path: Path, override: str, line: str) -> None:
    result = cli(override)
    assert result.code == 1 and len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith(line), result.err
    assert not (tmp_path / "outputs").exists()


def test_full_error_still_shows_hydras_own_text(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """HYDRA_FULL_ERROR=1: Hydra's exception, with its own message, goes on (the traceback is printed)."""
    from hydra.errors import ConfigCompositionException

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException, match=r"To append to your config use \+model.optimzer.lr=0.01"):
        cli("model.optimzer.lr=0.01")


def test_command_full_error_keeps_the_exception(command, monkeypatch: pytest.MonkeyPatch) -> None:
    """HYDRA_FULL_ERROR=1: the error goes on to Hydra, which prints its traceback."""
    from experiments.errors import ConfigError

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="ckpt_path is required"):
        command("evaluate")


def test_an_errno_anywhere_in_the_chain_is_the_environment() -> None:
    """torch's zip writer reports a full disk as a RuntimeError raised while the OSError was handled."""
    import errno

    from experiments.errors import is_bug, one_line

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/last.ckpt")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    except RuntimeError as suppressed:
        assert is_bug(suppressed), "a context suppressed with `from None` is not followed"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/last.ckpt")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    except RuntimeError as wrapped:
        assert not is_bug(wrapped)
        assert one_line(wrapped).startswith("/runs/x/checkpoints/last.ckpt: No space left on device (ENOSPC); free")
    try:
        try:
            raise FileNotFoundError(errno.ENOENT, "No such file", "cache.json")
        except FileNotFoundError:
            raise KeyError("a bug while handling a missing file")  # noqa: B904
    except KeyError as bug:
        assert is_bug(bug), "a missing file a library handled is no environment problem"


def test_a_checkpoint_write_on_a_full_disk_raises_the_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What torch's zip writer reports as `RuntimeError: [enforce fail at inline_container.cc ...]` reaches
    the failure path as the OSError itself (the ENOSPC line, and the half-written file deleted)."""
    import contextlib
    import errno
    import io as stdio

    from experiments import atomic
    from experiments.checkpoints.io import AtomicCheckpointIO

    class FullDisk(stdio.BytesIO):
        """Full after 4 KB: the first bytes of the archive fit."""

        def write(self, data: bytes) -> int:
            if self.tell() + len(data) > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(atomic, "atomic_write", contextlib.contextmanager(lambda path, *a, **k: (yield FullDisk())))
    with pytest.raises(OSError) as raised:
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10000)}, tmp_path / "checkpoints" / "last.ckpt")
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value.__cause__, RuntimeError)
