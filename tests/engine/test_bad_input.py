"""Every bad input ends with a message naming the file or value, and no partial result."""
import pytest

from dytune.engine import TrainConfig, evaluate_run, train
from tests.engine.fixtures import write_vtab_task
from tests.engine.test_engine import TINY, config


@pytest.mark.slow
def test_missing_dataset_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: VTAB-1K root not found"):
        train(TrainConfig(**TINY, data_root=str(tmp_path / "nowhere"), task="toy", output_dir=str(tmp_path / "r")))


@pytest.mark.slow
def test_missing_task_and_list_file(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar: task folder not found.*\['toy'\]"):
        train(config(tmp_path, task="cifar"))
    (tmp_path / "vtab" / "toy" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test.txt: list file not found"):
        train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("line, message", [
    ("images/test/000000.png", r"test.txt:1: expected '<image path> <integer label>'"),
    ("images/test/000000.png cat", r"test.txt:1: expected '<image path> <integer label>'"),
    ("images/test/000000.png 7", r"test.txt:1: label 7 is outside 0..2"),
])
def test_list_lines_that_do_not_parse(tmp_path, line, message):
    cfg = config(tmp_path)
    (tmp_path / "vtab" / "toy" / "test.txt").write_text(line + "\n")
    (tmp_path / "vtab" / "toy" / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match=message):
        train(cfg)


@pytest.mark.slow
def test_empty_split(tmp_path):
    cfg = config(tmp_path)
    (tmp_path / "vtab" / "toy" / "train800val200.txt").write_text("\n")
    with pytest.raises(ValueError, match="train800val200.txt: the split is empty"):
        train(cfg)


@pytest.mark.slow
def test_missing_and_broken_images_fail_or_are_skipped(tmp_path):
    cfg = config(tmp_path, epochs=1)
    folder = tmp_path / "vtab" / "toy"
    (folder / "images" / "train800" / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"train800val200.txt: 1 listed image\(s\) not found.*000001.png"):
        train(cfg)
    (folder / "images" / "train800" / "000002.png").write_bytes(b"not a png")
    cfg.skip_bad_images = True
    results = train(cfg)
    assert len(results["skipped_images"]) == 2 and "000002.png: cannot decode image" in " ".join(results["skipped_images"])
    cfg.skip_bad_images, cfg.output_dir = False, str(tmp_path / "other")
    (folder / "images" / "train800" / "000001.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"00000[12].png: cannot decode image"):
        train(cfg)


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_the_data(tmp_path):
    train(config(tmp_path, epochs=1))
    write_vtab_task(tmp_path / "vtab", "bigger", classes=5)
    with pytest.raises(ValueError, match=r"trained on 3 classes; the evaluation data \(vtab bigger test\) has 5"):
        evaluate_run(tmp_path / "run", ("task=bigger",))
    with pytest.raises(ValueError, match=r"(?s)does not fit the model.*shape mismatches.*saved \(64, 48\), model \(16, 48\)"):
        evaluate_run(tmp_path / "run", ("bottleneck=16",))
    with pytest.raises(ValueError, match=r"(?s)does not fit.*embed_dim|shape mismatches"):
        evaluate_run(tmp_path / "run", ('model_kwargs={"patch_size": 8, "depth": 2, "embed_dim": 96, "num_heads": 3}',))


@pytest.mark.slow
def test_unknown_or_invalid_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['epoch'\]"):
        TrainConfig.load([], ["epoch=3"])
    with pytest.raises(ValueError, match="method='adapter'"):
        TrainConfig.load([], ["method=adapter"])
    with pytest.raises(ValueError, match="target_rate"):
        TrainConfig.load([], ["target_rate=2"])
    with pytest.raises(FileNotFoundError, match="nope.yaml: config file not found"):
        TrainConfig.load([str(tmp_path / "nope.yaml")])
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        train(config(tmp_path, precision="fp16", device="cpu"))


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import torch
    import dytune.engine.trainer as trainer

    calls = {"n": 0}
    real = trainer.ObjectiveStep.forward

    def poisoned(self, images, targets):
        calls["n"] += 1
        if calls["n"] > 4:  # epoch 1 has 4 steps; the first step of epoch 2 goes NaN
            images = images * float("nan")
        return real(self, images, targets)

    monkeypatch.setattr(trainer.ObjectiveStep, "forward", poisoned)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 0: the DyT objective is not finite.*last good checkpoint is .*last"):
        train(config(tmp_path, epochs=3))
    run = tmp_path / "run"
    assert not (run / "results.json").exists()
    state = torch.load(run / "last" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 0  # the checkpoint of epoch 1, untouched


def _relabel(list_file, change):
    """Rewrite the labels of a list file with change(line number, label)."""
    rows = [line.rsplit(maxsplit=1) for line in list_file.read_text().splitlines()]
    list_file.write_text("".join(f"{path} {change(i, int(label))}\n" for i, (path, label) in enumerate(rows, 1)))


def test_labels_that_leave_classes_without_images_are_refused_unless_classes_txt_counts_them(tmp_path):
    from dytune.tasks.classification.vtab import num_classes, vtab_dataset

    root = tmp_path / "vtab"
    folder = write_vtab_task(root, "six", classes=6, counts={"train800": 12, "val200": 6, "test": 6})
    assert num_classes(root, "six") == 6
    _relabel(folder / "test.txt", lambda i, label: 9 if i == 3 else label)  # one bad label would make 10 classes
    message = (r"test.txt:3: label 9 implies 10 classes, but no image in any split of .*six has label 6, 7, 8; fix "
               r"the label, or list the 10 class names in .*six/classes.txt")
    with pytest.raises(ValueError, match=message):
        vtab_dataset(root, "six", "train800val200")
    (folder / "classes.txt").write_text("".join(f"class{i}\n" for i in range(10)))
    assert num_classes(root, "six") == 10 and len(vtab_dataset(root, "six", "test")) == 6
    (folder / "classes.txt").write_text("".join(f"class{i}\n" for i in range(6)))
    with pytest.raises(ValueError, match=r"test.txt:3: label 9 is outside 0..5"):
        vtab_dataset(root, "six", "test")
    (folder / "classes.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"classes.txt: no class names"):
        num_classes(root, "six")


def test_a_gap_in_the_middle_of_the_labels_is_named(tmp_path):
    from dytune.tasks.classification.vtab import num_classes

    folder = write_vtab_task(tmp_path / "vtab", "four", classes=4, counts={"train800": 8, "val200": 4, "test": 4})
    for split in ("train800", "val200", "train800val200", "test"):
        _relabel(folder / f"{split}.txt", lambda i, label: 3 if label == 2 else label)
    message = r"train800.txt:3: label 3 implies 4 classes, but no image in any .* has label 2;"
    with pytest.raises(ValueError, match=message):
        num_classes(tmp_path / "vtab", "four")
