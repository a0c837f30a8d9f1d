"""`tireid push-space`: the Space folder it writes (metadata, pinned requirements, the model and gallery
copied in), its app served from that folder alone in a fresh process, and the one-commit upload."""

import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from gradio_client import Client
from huggingface_hub import SpaceCard

from helpers import FakeApi
from tester import IMAGE_SIZE, ModelTester
from tireid_hf.cli import main
from tireid_hf.hub.demo_space import push_space
from tireid_hf.processing import TIReIDProcessor

SRC = Path(__file__).resolve().parents[1] / "src"
READY = "Running on local URL"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def model_and_gallery(tmp_path, small_test_split):
    model = tmp_path / "trained"
    ModelTester("clip_reid").model().save_pretrained(model)
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(model)
    gallery = tmp_path / "images"
    gallery.mkdir()
    for index, image in enumerate(small_test_split["image"][:6]):
        image.save(gallery / f"person-{index}.png")
    return model, gallery


def test_dry_run_folder_is_a_gradio_space_with_pinned_requirements(model_and_gallery, tmp_path):
    model, gallery = model_and_gallery
    out = tmp_path / "space"
    assert main(["push-space", "--model", str(model), "--gallery", str(gallery), "--dry-run", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "app.py", "gallery", "model", "requirements.txt",
                                                           "space_settings.json"]
    metadata = SpaceCard.load(out / "README.md").data
    assert (metadata.sdk, metadata.sdk_version, metadata.app_file) == ("gradio", version("gradio"), "app.py")
    assert metadata.suggested_hardware == "cpu-basic" and metadata.models is None  # a local model is copied, not linked
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert {f"gradio=={version('gradio')}", f"transformers=={version('transformers')}", "tireid-hf[demo]==0.1.0"} <= set(requirements)
    assert (out / "model" / "model.safetensors").is_file() and len(list((out / "gallery").iterdir())) == 6

    hub = tmp_path / "hub-space"
    main(["push-space", "--model", "org/lcr2s-cuhk", "--dry-run", str(hub)])
    assert SpaceCard.load(hub / "README.md").data.models == ["org/lcr2s-cuhk"] and not (hub / "model").exists()
    with pytest.raises(SystemExit, match="--gallery nowhere: not a folder"):
        main(["push-space", "--model", "org/x", "--gallery", "nowhere", "--dry-run", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_the_dry_run_app_answers_a_query_from_that_folder_alone(model_and_gallery, tmp_path):
    model, gallery = model_and_gallery
    out = tmp_path / "space"
    main(["push-space", "--model", str(model), "--gallery", str(gallery), "--dry-run", str(out)])
    for source in (model, gallery):  # the Space must not reach back to where its parts came from
        source.rename(source.with_name(source.name + "-moved"))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TIREID_")}
    env.update(PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1", GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", XDG_CACHE_HOME=str(tmp_path / "cache"))
    process = subprocess.Popen([sys.executable, "app.py"], cwd=out, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in process.stdout:  # blocks until the app prints: ready, or its traceback and EOF
            output.append(line)
            if READY in line:
                break
        assert READY in "".join(output), "the Space app did not start:\n" + "".join(output)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        results, status = client.predict("a woman in a red coat", 3, False, api_name="/search")
        assert len(results) == 3 and results[0]["caption"].startswith("#1 · ")
        assert "no matches are marked" in status  # a folder of images: identities unknown
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_push_space_uploads_the_folder_in_one_commit_and_fails_fast_offline(model_and_gallery):
    model, gallery = model_and_gallery
    api = FakeApi()
    assert push_space("org/demo", model=str(model), gallery=str(gallery), api=api) == "https://huggingface.co/spaces/org/demo"
    assert api.calls[0] == ("create_repo", "org/demo", {"repo_type": "space", "private": False, "exist_ok": True,
                                                        "space_sdk": "gradio"})
    (_, upload), = api.calls[1:]
    assert upload["files"] == ["README.md", "app.py", "gallery", "model", "requirements.txt", "space_settings.json"]
    with pytest.raises(SystemExit, match="tireid push-space: Cannot push: .*offline mode"):
        main(["push-space", "--repo", "org/demo", "--model", str(model)])
