"""transformers' own common model tests (``ModelTesterMixin``) over every registered method.

The mixin is used as a library: ``tests/test_modeling_common.py`` of the sdist of the INSTALLED
transformers version, downloaded once from PyPI with pip into ``.cache/transformers-tests/<version>/``
(git-ignored) and imported from there — never copied into this repository. Each method gets a
``unittest.TestCase`` with exactly the flags and skips of transformers' ``CLIPModelTest``; the further
skips, each with its reason, are in ``FURTHER_SKIPS`` and TESTING.md ("Conformance").

The sdist ships the mixin without two sibling modules it imports: ``generation/test_utils.py``
(``GenerationTesterMixin``, used by the mixin only in ``issubclass`` checks that a non-generating model's
tester must fail) and ``exporters/test_export.py`` (``ExportTesterMixin``, the mixin's base class holding
the export tests). Both enter ``sys.modules`` as empty classes: a TIReID model does not generate, and the
training-path export is checked in tests/test_conformance.py instead.

``make conformance`` runs this file alone, ``make test`` beside the rest of the suite (its name has no ``test_``
prefix, so a bare ``pytest`` does not collect it: it needs PyPI once).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import types
import unittest
from pathlib import Path

import transformers
from transformers.testing_utils import slow

from tireid_hf.modeling import METHODS

from tester import ModelTester

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "transformers-tests" / transformers.__version__
PACKAGE = "transformers_tests"


def transformers_test_suite(cache: Path = CACHE) -> Path:
    """The folder holding ``transformers_tests/`` (the sdist's ``tests/``) of the installed version,
    downloaded with ``pip download`` and unpacked on first use; the unpacked folder appears whole or
    not at all (unpacked beside it, then renamed)."""
    if (cache / PACKAGE / "test_modeling_common.py").is_file():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as scratch:
        requirement = f"transformers=={transformers.__version__}"
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--timeout", "30",
             "--retries", "2", "-d", scratch, requirement],
            capture_output=True, text=True,
        )
        if download.returncode != 0:
            raise RuntimeError(
                f"transformers' model tests come from the sdist of the installed version on PyPI, and `pip download "
                f"{requirement}` failed (is PyPI reachable?). Run it once with network access: the tests are then kept "
                f"in {cache} and need no network again. pip said:\n{download.stderr.strip()}"
            )
        (sdist,) = Path(scratch).glob("transformers-*.tar.gz")
        prefix = f"transformers-{transformers.__version__}/tests/"
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(sdist) as archive:
            members = [member for member in archive.getmembers() if member.name.startswith(prefix)]
            for member in members:
                member.name = PACKAGE + "/" + member.name[len(prefix):]
            archive.extractall(unpacked, members=members, filter="data")
        if not (unpacked / PACKAGE / "test_modeling_common.py").is_file():
            raise RuntimeError(f"{sdist.name} has no tests/test_modeling_common.py")
        (unpacked / PACKAGE / "__init__.py").touch()
        try:
            os.replace(unpacked, cache)
        except OSError:  # another process unpacked it first
            if not (cache / PACKAGE / "test_modeling_common.py").is_file():
                raise
    return cache


def import_model_tester_mixin():
    """``ModelTesterMixin`` of the installed transformers version (see the module docstring)."""
    sys.path.insert(0, str(transformers_test_suite()))
    for name in (PACKAGE, f"{PACKAGE}.generation", f"{PACKAGE}.exporters"):
        sys.modules.setdefault(name, importlib.import_module(name) if name == PACKAGE else types.ModuleType(name))
    placeholders = {"generation.test_utils": "GenerationTesterMixin", "exporters.test_export": "ExportTesterMixin"}
    for module_name, class_name in placeholders.items():
        module = types.ModuleType(f"{PACKAGE}.{module_name}")
        setattr(module, class_name, type(class_name, (), {}))
        sys.modules.setdefault(module.__name__, module)
    return importlib.import_module(f"{PACKAGE}.test_modeling_common").ModelTesterMixin


ModelTesterMixin = import_model_tester_mixin()


class TIReIDModelTester(ModelTester):
    """tests/tester.py's tiny model and batch in the shape transformers' mixin asks of a model tester: CLIP's
    tester vocabulary of 99 ids (97 and 98 start and end a text, CADA masks with 96) and, as CLIPModelTester's
    ``return_loss=True``, the batch's ``pids`` so that ``forward`` returns a loss."""

    def __init__(self, parent, method: str):
        overrides = {"mask_token_id": VOCAB_SIZE - 3} if hasattr(METHODS[method][0], "mask_token_id") else {}
        super().__init__(method, batch_size=4, vocab_size=VOCAB_SIZE, word_ids=(1, VOCAB_SIZE - 3), **overrides)
        self.parent = parent
        self.is_training = True
        self.seq_length = self.text_length

    def get_config(self):
        return self.config()

    def prepare_config_and_inputs_for_common(self):
        return self.config(), self.inputs()


VOCAB_SIZE = 99  # CLIPTextModelTester's
# What transformers' CLIPModelTest (tests/models/clip/test_modeling_clip.py) sets and skips.
CLIP_MODEL_TEST_FLAGS = dict(test_resize_embeddings=False, test_attention_outputs=False, _is_composite=True,
                             additional_model_inputs=["pixel_values"])
CLIP_MODEL_TEST_SKIPS = {
    "test_hidden_states_output": "Hidden_states is tested in individual model tests",
    "test_inputs_embeds": "Inputs_embeds is tested in individual model tests",
    "test_retain_grad_hidden_states_attentions": "Retain_grad is tested in individual model tests",
    "test_model_get_set_embeddings": "CLIPModel does not have input/output embeddings",
    "test_sdpa_can_dispatch_on_flash": "CLIP text tower has two attention masks: `causal_attention_mask` and `attention_mask`",
    "test_sdpa_can_compile_dynamic": "CLIP model can't be compiled dynamic, error in clip_loss`",
}
# CLIPModelTest marks these @slow: they run only with RUN_SLOW=1.
CLIP_MODEL_TEST_SLOW = ("test_eager_matches_sdpa_inference",)
# Skips beyond CLIPModelTest's, each with its reason (also in TESTING.md).
FEATURES_ARE_TENSORS = ("get_image_features / get_text_features return the method's L2-normalised retrieval embeddings "
                        "[N, D] (its inference path), not CLIP's BaseModelOutputWithPooling: a documented choice (DESIGN.md)")
FURTHER_SKIPS = {f"test_get_{modality}_features_{check}": FEATURES_ARE_TENSORS
                 for modality in ("image", "text") for check in ("output", "hidden_states", "attentions")}


def mixin_tests(name: str) -> list[str]:
    """The mixin's test methods called ``name``, or generated from it by ``parameterized.expand`` (``name_0``, ...)."""
    return [test for test in dir(ModelTesterMixin) if re.fullmatch(rf"{name}(_\d+(_\w+)?)?", test)]


def _skipped(reason: str):
    @unittest.skip(reason=reason)
    def test(self):
        pass

    return test


def conformance_case(method: str) -> type:
    """The ``unittest.TestCase`` running ``ModelTesterMixin`` over ``method``'s model class."""
    model_class = METHODS[method][1]
    attributes = dict(CLIP_MODEL_TEST_FLAGS, all_model_classes=(model_class,),
                      setUp=lambda self: setattr(self, "model_tester", TIReIDModelTester(self, method)))
    for name in CLIP_MODEL_TEST_SLOW:
        attributes.update({test: slow(getattr(ModelTesterMixin, test)) for test in mixin_tests(name)})
    for name, reason in {**CLIP_MODEL_TEST_SKIPS, **FURTHER_SKIPS}.items():
        attributes.update({test: _skipped(reason) for test in mixin_tests(name)})
    return type(f"{model_class.__name__}ConformanceTest", (ModelTesterMixin, unittest.TestCase), attributes)


for _method in METHODS:
    _case = conformance_case(_method)
    globals()[_case.__name__] = _case
del _method, _case
