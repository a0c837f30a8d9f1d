"""No code runs from a file: one test per loader, each given a file that carries code.

Every pickle here makes a folder when it is unpickled (``os.mkdir`` through ``__reduce__``), so "no code
ran" is "the folder does not exist"; the TorchScript archives print a marker from their own code,
caught at the file-descriptor level (``capfd``), where TorchScript's ``print`` writes.
"""

import json
import os
import pickle
import shutil
import warnings
import zipfile

import pytest
import torch
from torch import nn
from transformers import AutoModel

import tireid_hf  # noqa: F401  (registers the Auto classes)
from test_data_readers import ANNOTATION, PATH_FIELD, make_release
from tester import tiny_clip_config
from tireid_hf.cli import main
from tireid_hf.convert import ConversionError, read_state_dict
from tireid_hf.data import DatasetFormatError, load_tireid_dataset
from tireid_hf.data.synthetic import export_cuhk_format
from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel
from tireid_hf.training.arguments import parse_training_arguments
from tireid_hf.training.checkpoints import TrainingProgress
from tireid_hf.training.loop import _restore_state

MARKER = "ARCHIVE CODE RAN"


class _MakesFolder:
    """Unpickling it calls ``os.mkdir(path)``: the side effect a hostile pickle would have."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def jit_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated in favour of export
        return torch.jit.load(str(path))


def jit_save(module: nn.Module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


# ------------------------------------------------------------------------------------ TorchScript
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3, bias=False)  # a None bias: left out, as state_dict does
        self.norm = nn.LayerNorm(3).half()
        self.register_buffer("scale", torch.tensor([2.0, 3.0, 4.0]))
        self.register_buffer("count", torch.tensor(7), persistent=False)
        self.cache = torch.arange(5)  # a plain tensor attribute: not part of state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("ARCHIVE CODE RAN")  # TorchScript cannot read a module-level constant
        return self.norm(self.proj(x).half()).float() * self.scale


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        self.first, self.second = _Block(), _Block()
        self.head = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(x).sum(-1, keepdim=True).expand(-1, 4))) * self.logit_scale


class _RunsOnLoad(nn.Module):
    """A TorchScript ``__setstate__``: torch.jit.load runs it while loading the archive."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        print("ARCHIVE CODE RAN")
        self.weight = state[0]
        self.training = state[1]


def test_a_torchscript_archive_is_read_as_data_with_the_tensors_jit_load_gives(tmp_path, capfd):
    archive = jit_save(_Model(), tmp_path / "model.pt")
    state = read_state_dict(archive)
    assert MARKER not in capfd.readouterr().out
    expected = jit_load(archive).state_dict()
    assert list(state) == list(expected)  # parameters, buffers, then submodules, as torch.jit.load names them
    for name, tensor in expected.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name


def test_an_archive_whose_code_runs_on_load_is_refused_and_runs_nothing(tmp_path, capfd):
    archive = jit_save(_RunsOnLoad(), tmp_path / "ViT-B-16.pt")
    jit_load(archive)
    assert MARKER in capfd.readouterr().out  # the archive does carry code that loading runs
    with pytest.raises(SystemExit, match=f"{archive}: class __torch__.*_RunsOnLoad defines __setstate__"):
        main(["convert", "openai-clip", str(archive), "--out", str(tmp_path / "clip")])
    assert MARKER not in capfd.readouterr().out
    assert not (tmp_path / "clip").exists()


def test_an_archive_whose_data_pkl_calls_a_function_is_refused_naming_it(tmp_path):
    archive = jit_save(_Model(), tmp_path / "model.pt")
    hostile = tmp_path / "hostile.pt"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(hostile, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_MakesFolder(tmp_path / "ran"), protocol=2)
            target.writestr(item, data)
    with pytest.raises(ConversionError, match=f"{hostile}: data.pkl is not readable as data .*{os.mkdir.__module__}.mkdir"):
        read_state_dict(hostile)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------- pickles
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_checkpoint_pickle_that_calls_a_function_is_refused_by_convert(tmp_path, writer):
    checkpoint = tmp_path / "best.pth"
    payload = {"model": {"base_model.logit_scale": _MakesFolder(tmp_path / "ran")}}
    if writer == "torch.save":
        torch.save(payload, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(payload))
    with pytest.raises(SystemExit, match=f"{checkpoint}: not a readable PyTorch state dict"):
        main(["convert", "irra", str(checkpoint), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()


def test_a_pickle_in_place_of_model_safetensors_runs_nothing(tmp_path):
    folder = tmp_path / "model"
    ClipReIDModel(ClipReIDConfig(clip_config=tiny_clip_config().to_dict(), image_size=(64, 32))).save_pretrained(folder)
    torch.save({"clip.logit_scale": _MakesFolder(tmp_path / "ran")}, folder / "model.safetensors")
    with pytest.raises(Exception, match="(?i)safetensors|header"):
        AutoModel.from_pretrained(folder)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("replaced", ["optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"])
def test_a_resumed_checkpoint_unpickles_no_object(tmp_path, replaced):
    """The resume path (``_restore_state``: Accelerate's ``load_state``) reads every file of the checkpoint
    folder with ``weights_only`` and registers no custom object, so a pickle that calls a function is
    refused even where an attacker also rewrote the folder's manifest."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator.save_state(str(tmp_path / "checkpoint"))
    progress = TrainingProgress("clip_reid", scheduler_state=scheduler.state_dict())
    torch.save(_MakesFolder(tmp_path / "ran"), tmp_path / "checkpoint" / replaced)
    if replaced == "random_states_0.pkl":  # Accelerate logs an unreadable random state and goes on
        _restore_state(accelerator, scheduler, progress, tmp_path / "checkpoint")
    else:
        with pytest.raises((pickle.UnpicklingError, RuntimeError), match="(?i)weights_only|custom"):
            _restore_state(accelerator, scheduler, progress, tmp_path / "checkpoint")
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------------------------- YAML
def test_a_yaml_config_with_a_python_tag_runs_nothing_and_names_the_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"learning_rate: !!python/object/apply:os.mkdir [{json.dumps(str(tmp_path / 'ran'))}]\n")
    with pytest.raises(Exception, match=f"(?s)python/object/apply:os.mkdir.*{config}"):
        parse_training_arguments(["--config", str(config)])
    assert not (tmp_path / "ran").exists()


# -------------------------------------------------------------------------- paths read from a dataset
def _link_first_image(root, name, target):
    """Replaces the first record's image by a symbolic link to `target`; returns the record's path."""
    records = json.loads((root / ANNOTATION[name]).read_text())
    image = root / "imgs" / records[0][PATH_FIELD[name]]
    shutil.copy(image, target)
    image.unlink()
    image.symlink_to(target)
    return records[0][PATH_FIELD[name]]


@pytest.mark.parametrize("name", ["cuhk-pedes", "icfg-pedes", "rstpreid"])
@pytest.mark.parametrize("skip_bad_images", [False, True])
def test_an_image_linked_outside_the_root_is_refused_by_every_reader(tmp_path, name, skip_bad_images):
    root = tmp_path / "release"
    root.mkdir()
    make_release(root, name)
    relative = _link_first_image(root, name, tmp_path / "outside.png")
    with pytest.raises(DatasetFormatError, match=rf"^{root / ANNOTATION[name]}: record 0: field '{PATH_FIELD[name]}': "
                       rf"image imgs/{relative} resolves to {tmp_path / 'outside.png'}, outside the dataset root {root}"):
        load_tireid_dataset(name, root, skip_bad_images=skip_bad_images)


@pytest.mark.parametrize("name", ["cuhk-pedes", "icfg-pedes", "rstpreid"])
def test_an_image_linked_inside_the_root_is_read(tmp_path, name):
    make_release(tmp_path, name)
    (tmp_path / "elsewhere").mkdir()
    relative = _link_first_image(tmp_path, name, tmp_path / "elsewhere" / "image.png")
    dataset = load_tireid_dataset(name, tmp_path)
    rows = [row for split in dataset.values() for row in split if row["image_path"] == f"imgs/{relative}"]
    assert len(rows) == 1 and rows[0]["image"].size == (8, 24)


def test_data_prepare_refuses_an_image_linked_outside_the_root(tmp_path):
    root = export_cuhk_format(tmp_path / "raw", num_train_ids=3, num_validation_ids=1, num_test_ids=1, images_per_id=2)
    relative = _link_first_image(root, "cuhk-pedes", tmp_path / "outside.png")
    with pytest.raises(SystemExit, match=f"{root / 'reid_raw.json'}: record 0: field 'file_path': image imgs/{relative} "
                       "resolves to .*outside.png, outside the dataset root"):
        main(["data", "prepare", "--dataset", "cuhk-pedes", "--root", str(root), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
