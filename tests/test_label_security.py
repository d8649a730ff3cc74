"""The MONAI Label app keeps requests inside the studies folder and cleans up every upload.

The name rules and train-request checks on their own, then one real ``monailabel start_server``
for the module (loopback only, ``--conf max_upload_mb 1``, its ``TMPDIR`` a folder of the test)
driven with plain HTTP requests: traversal in tags and ids on every datastore, infer and
active-learning endpoint, absolute paths, the existence oracle, temp files after rejected uploads
of each kind, the size limit, train requests that would run code, a burst of parallel requests,
and at the end: still serving, labels saved at the start byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import disc_video
from label_utils import ServerProcess, start_server, wait_until_serving, write_label, write_studies

from stbv_monai.errors import InputError
from stbv_monai.label.app_config import DEFAULT_MAX_UPLOAD_MB, AppConfig
from stbv_monai.label.safe_names import (
    UnsafeName,
    check_new_id,
    check_tag,
    is_known_id,
    is_safe_tag,
    shown,
    unknown_video,
)

requests = pytest.importorskip("requests")
pytest.importorskip("monailabel", reason="needs the 'label' extra (MONAI Label)")
from stbv_monai.label.two_shot_train import check_overrides, resolve_config_files  # noqa: E402

slow = pytest.mark.slow

T, SIZE = 8, 32
VIDEOS = ("vid0", "vid1", "vid2", "short")
LIMIT_MB = 1
BAD_TAGS = ("../../escape", "../escape", "..", ".", "final/../../escape", "a/b", "..\\escape", ".hidden",
            "-x", "fin al", "x" * 65, "tag\x00")


# ----------------------------------------------------------------------------- pure rules


def test_tags_and_new_ids_are_plain_names_and_known_ids_come_from_the_list():
    for tag in ("final", "original", "v2.1", "a-b_c", "x" * 64):
        assert is_safe_tag(tag) and check_tag(tag) == tag
    for tag in BAD_TAGS + ("", "/abs/path", 3, None):
        assert not is_safe_tag(tag)
        with pytest.raises(UnsafeName, match="label tag"):
            check_tag(tag)
    from monailabel.interfaces.datastore import DefaultLabelTag

    assert check_tag(DefaultLabelTag.FINAL) == "final"  # the enum's value, not 'DefaultLabelTag.FINAL'
    assert check_new_id("clip_1.v2") == "clip_1.v2"
    for bad in ("../../evil", "/abs", "a/b", "..", "", ".x", "a..b", None):
        with pytest.raises(UnsafeName, match="video id"):
            check_new_id(bad)
    known = ["vid0", "vid1"]
    assert is_known_id("vid0", known)
    for bad in ("vid9", "/work/vid0", "../vid0", "vid0/", ".", "..", "", None, ["vid0"]):
        assert not is_known_id(bad, known)
    assert unknown_video("/x/" + "y" * 200).count("y") < 80  # the caller's string is cut


def test_train_requests_name_only_repository_configs_and_plain_overrides(tmp_path):
    assert resolve_config_files("tiny", ["configs/presets/tiny.yaml"])[-1].name == "tiny.yaml"
    evil = tmp_path / "evil.yaml"
    evil.write_text("x: \"$open('pwned', 'w')\"\n")
    for preset, files in (("../../x", None), (None, [str(evil)]), (None, ["../" + evil.name]),
                          (None, ["configs/../pyproject.toml"]), (None, ["README.md"]), (None, "~/x.yaml")):
        with pytest.raises(InputError, match="preset|config_files"):
            resolve_config_files(preset, files)
    plain = {"teacher_stage#iterations": 5, "lr": 1e-4, "spatial_size": [64, 64], "device": "cuda:0", "a::b": None}
    assert check_overrides(json.dumps(plain)) == plain
    for bad in ({"x": "$__import__('os').system('id')"}, {"_target_": "os.system"}, {"a#_target_": "x"},
                {"x": "@y"}, {"x": "%/etc/x.yaml#y"}, {"args_file": "a.json"}, {"tracking": "mlflow"},
                {"x": {"_target_": "os.system"}}, {"x": "/tmp/a"}, {"x": "a..b"}, {"x": [[1]]}, "[1]", "{"):
        with pytest.raises(InputError, match="overrides"):
            check_overrides(bad)


def test_the_upload_limit_is_a_conf_key_with_a_default(tmp_path):
    assert AppConfig.from_conf(tmp_path, {}).max_upload_bytes == DEFAULT_MAX_UPLOAD_MB * 2**20 <= 2 * 2**30
    assert AppConfig.from_conf(tmp_path, {"max_upload_mb": "0.5"}).max_upload_bytes == 2**19
    for bad in ("0", "-1", "lots", "inf", "nan"):
        with pytest.raises(InputError, match="max_upload_mb"):
            AppConfig.from_conf(tmp_path, {"max_upload_mb": bad})


def test_entries_with_unsafe_names_in_an_old_datastore_file_are_ignored(tmp_path):
    """A ``datastore_v2.json`` written before the checks (a traversal tag, a path id) reaches nothing."""
    from fastapi import HTTPException

    from stbv_monai.label.references import ResultMemory
    from stbv_monai.label.video_datastore import VideoDatastore

    studies = write_studies(tmp_path / "site" / "studies", {"vid0": disc_video(T, SIZE)[0]})
    escape = tmp_path / "site" / "escape" / "vid0.nii.gz"  # labels/../../escape/vid0.nii.gz
    escape.parent.mkdir(parents=True)
    escape.write_bytes(b"outside")
    entry = {"ext": ".nii.gz", "info": {"name": "vid0.nii.gz"}}
    (studies / "datastore_v2.json").write_text(json.dumps({
        "name": "old", "description": "", "images_dir": ".", "labels_dir": "labels",
        "objects": {"vid0": {"image": entry, "labels": {"../../escape": entry}},
                    "../outside": {"image": entry, "labels": {}}}}))
    store = VideoDatastore(str(studies), ResultMemory(), auto_reload=False)
    assert store.list_images() == ["vid0"]
    assert store.get_labels_by_image_id("vid0") == {}
    with pytest.raises(HTTPException) as info:
        store.get_label_uri("vid0", "../../escape")
    assert info.value.status_code == 400
    with pytest.raises(HTTPException) as info:
        store.get_image_uri("../outside")
    assert info.value.status_code == 404
    store.remove_image("vid0")
    assert escape.read_bytes() == b"outside" and not (studies / "vid0.nii.gz").exists()


# ----------------------------------------------------------------------------- the server


@dataclass
class Site:
    """The server, its folders, and what must not change."""

    server: ServerProcess
    http: requests.Session
    workdir: Path
    studies: Path
    tmp: Path
    outside: dict[str, Path]
    label: bytes
    saved: dict[str, bytes]
    saved_info: dict[str, dict]
    tmp_baseline: set[str]

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, self.server.url + path, timeout=60, **kwargs)

    def label_file(self, data: bytes | None = None, name: str = "label.nii.gz") -> dict:
        return {"label": (name, data if data is not None else self.label)}

    def tmp_leftovers(self, wait: float = 5.0) -> set[str]:
        """Entries of the server's temp folder that were not there at the start (background tasks get ``wait`` s)."""
        deadline = time.monotonic() + wait
        while True:  # torch may create its compile cache folder there at any time: not an upload
            extra = {f for f in os.listdir(self.tmp) if not f.startswith("torchinductor_")} - self.tmp_baseline
            if not extra or time.monotonic() > deadline:
                return extra
            time.sleep(0.1)

    def escapes(self) -> list[Path]:
        """Files named like the traversal targets anywhere in the test's folder."""
        return sorted(p for p in self.workdir.rglob("*") if "escape" in p.name or p.name.startswith("pwned"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    workdir = tmp_path_factory.mktemp("label_security")
    videos = {name: disc_video(T, SIZE, seed=i)[0] for i, name in enumerate(VIDEOS[:3])}
    videos["short"] = disc_video(2, SIZE, seed=9)[0]
    studies = write_studies(workdir / "site" / "studies", videos)  # ../../ of labels/final is still ours
    outside = {"video": workdir / "outside" / "secret.nii.gz", "text": workdir / "outside" / "notes.txt",
               "missing": workdir / "outside" / "missing.nii.gz"}
    write_studies(outside["video"].parent, {"secret": disc_video(T, SIZE, seed=5)[0]})
    outside["text"].write_text("not a video\n")
    tmp = workdir / "tmp"
    tmp.mkdir()
    mask = disc_video(T, SIZE, seed=0)[1]
    mask[[0, 2, 3, 4, 5, 7]] = 0
    label = Path(write_label(workdir / "labels" / "sparse.nii.gz", mask)).read_bytes()
    conf = {"model_path": "none", "model_dir": str(workdir / "model"), "device": "cpu",
            "max_upload_mb": str(LIMIT_MB)}
    server = start_server(studies, workdir, conf, env={"TMPDIR": str(tmp)})
    http = requests.Session()
    http.trust_env = False  # loopback only, never a proxy
    try:
        wait_until_serving(server, _Probe(http, server.url))
        for video in ("vid0", "vid1"):
            r = http.put(f"{server.url}/datastore/label", params={"image": video, "tag": "final"},
                         files={"label": ("label.nii.gz", label)}, timeout=60)
            assert r.status_code == 200, r.text
        store = http.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60).json()["objects"]
        saved = {v: (studies / "labels" / "final" / f"{v}.nii.gz").read_bytes() for v in ("vid0", "vid1")}
        time.sleep(0.5)  # the saves' background tasks
        yield Site(server, http, workdir, studies, tmp, outside, label, saved,
                   {v: store[v]["labels"]["final"]["info"] for v in saved}, set(os.listdir(tmp)))
    finally:
        server.stop()


class _Probe:
    """What :func:`wait_until_serving` needs of a client: ``info()``."""

    def __init__(self, http: requests.Session, url: str) -> None:
        self.http, self.url = http, url

    def info(self) -> dict:
        r = self.http.get(f"{self.url}/info/", timeout=5)
        r.raise_for_status()
        return r.json()


def detail(r: requests.Response) -> str:
    try:
        return str(r.json().get("detail"))
    except ValueError:
        return r.text


def bad_ids(site: Site) -> dict[str, str]:
    """Ids that must all be answered like an unknown video: paths to real files, traversals, missing."""
    rel = os.path.relpath(site.outside["video"], site.studies)
    return {"abs_video": str(site.outside["video"]), "abs_video_no_ext": str(site.outside["video"])[:-7],
            "abs_text": str(site.outside["text"]), "abs_missing": str(site.outside["missing"]),
            "rel_video": rel, "rel_video_no_ext": rel[:-7], "rel_cwd": os.path.relpath(site.outside["video"]),
            "dotdot_passwd": "../../../../etc/passwd", "dot": ".", "dotdot": "..", "nested": "vid0/../vid1",
            "unknown": "vid9"}


def id_endpoints(site: Site) -> list[tuple[str, str, Callable[[str], dict]]]:
    """Every endpoint that takes a video id: ``(method, path, id -> request kwargs)``."""
    label = site.label
    return [
        ("GET", "/datastore/image", lambda i: {"params": {"image": i}}),
        ("HEAD", "/datastore/image", lambda i: {"params": {"image": i}}),
        ("GET", "/datastore/image/info", lambda i: {"params": {"image": i}}),
        ("PUT", "/datastore/image/info", lambda i: {"params": {"image": i}, "data": {"info": "{}"}}),
        ("DELETE", "/datastore/", lambda i: {"params": {"id": i}}),
        ("DELETE", "/datastore/image", lambda i: {"params": {"id": i}}),
        ("PUT", "/datastore/label", lambda i: {"params": {"image": i, "tag": "final"},
                                               "files": {"label": ("l.nii.gz", label)}}),
        ("GET", "/datastore/label", lambda i: {"params": {"label": i, "tag": "final"}}),
        ("HEAD", "/datastore/label", lambda i: {"params": {"image": i, "tag": "final"}}),
        ("GET", "/datastore/label/info", lambda i: {"params": {"label": i, "tag": "final"}}),
        ("PUT", "/datastore/label/info", lambda i: {"params": {"label": i, "tag": "final"}, "data": {"info": "{}"}}),
        ("PUT", "/datastore/updatelabelinfo", lambda i: {"params": {"label": i, "tag": "final"},
                                                         "data": {"params": "{}"}}),
        ("DELETE", "/datastore/label", lambda i: {"params": {"id": i, "tag": "final"}}),
        ("POST", "/infer/propagate", lambda i: {"params": {"image": i}}),
        ("POST", "/infer/propagate", lambda i: {"params": {"image": i}, "files": {"label": ("l.nii.gz", label)}}),
        ("POST", "/infer/propagate", lambda i: {"params": {"image": i, "output": "image"},
                                                "data": {"params": json.dumps({"save_label": True})}}),
        ("POST", "/activelearning/two_frames", lambda i: {"json": {"image": i}}),
    ]


@slow
def test_every_endpoint_answers_paths_and_unknown_ids_like_a_missing_video(site):
    n = len(VIDEOS)
    for method, path, kwargs in id_endpoints(site):
        for name, bad in bad_ids(site).items():
            r = site.call(method, path, **kwargs(bad))
            assert r.status_code == 404, (method, path, name, r.status_code, r.text)
            if method != "HEAD":
                assert detail(r) == unknown_video(bad, n), (method, path, name, r.text)
    assert site.outside["video"].is_file() and site.outside["text"].is_file()  # DELETE touched nothing
    assert not site.escapes()


@slow
def test_no_existence_oracle_outside_the_studies_folder(site):
    ids = bad_ids(site)
    for method, path, kwargs in id_endpoints(site):
        answers = set()
        for name in ("abs_video", "abs_text", "abs_missing", "rel_video"):
            r = site.call(method, path, **kwargs(ids[name]))
            answers.add((r.status_code, detail(r).replace(shown(ids[name]), "<id>") if method != "HEAD" else ""))
        assert len(answers) == 1, (method, path, answers)  # a video, a text file, nothing: one answer


@slow
def test_label_tags_cannot_leave_the_labels_folder(site):
    label_dirs = sorted(p.name for p in (site.studies / "labels").iterdir())
    tag_endpoints = [
        ("PUT", "/datastore/label", lambda t: {"params": {"image": "vid0", "tag": t}, "files": site.label_file()}),
        ("GET", "/datastore/label", lambda t: {"params": {"label": "vid0", "tag": t}}),
        ("HEAD", "/datastore/label", lambda t: {"params": {"image": "vid0", "tag": t}}),
        ("GET", "/datastore/label/info", lambda t: {"params": {"label": "vid0", "tag": t}}),
        ("PUT", "/datastore/label/info", lambda t: {"params": {"label": "vid0", "tag": t}, "data": {"info": "{}"}}),
        ("PUT", "/datastore/updatelabelinfo", lambda t: {"params": {"label": "vid0", "tag": t},
                                                         "data": {"params": "{}"}}),
        ("DELETE", "/datastore/label", lambda t: {"params": {"id": "vid0", "tag": t}}),
        ("POST", "/infer/propagate", lambda t: {"params": {"image": "vid0"},
                                                "data": {"params": json.dumps({"reference_tag": t})}}),
        ("POST", "/infer/propagate", lambda t: {"params": {"image": "vid0"},
                                                "data": {"params": json.dumps({"save_label": True, "label_tag": t})}}),
    ]
    for method, path, kwargs in tag_endpoints:
        for tag in BAD_TAGS + (str(site.workdir / "abs_escape"),):
            r = site.call(method, path, **kwargs(tag))
            assert r.status_code == 400, (method, path, tag, r.status_code, r.text)
            if method != "HEAD":
                assert "label tag" in detail(r) and "not allowed" in detail(r), r.text
    assert not site.escapes()
    assert sorted(p.name for p in (site.studies / "labels").iterdir()) == label_dirs
    assert (site.studies / "labels" / "final" / "vid0.nii.gz").read_bytes() == site.saved["vid0"]


@slow
def test_infer_accepts_files_only_as_uploads(site):
    secret = str(site.outside["video"])
    cases = [
        ({"params": {"image": "vid0"}, "data": {"params": json.dumps({"label": secret})}}, 400, "may not set label"),
        ({"params": {"image": "vid0"}, "data": {"params": json.dumps({"image": secret})}}, 400, "may not set image"),
        ({"params": {"image": "vid0"}, "files": {"file": ("v.nii.gz", site.outside["video"].read_bytes())},
          "data": {"params": json.dumps({"image": secret})}}, 400, "may not set image"),
        ({"params": {"image": "vid0"}, "data": {"params": json.dumps({"session": {"image": secret}})}}, 400,
         "may not set session"),
        ({"params": {"image": "vid0", "session_id": "x"}}, 400, "sessions are disabled"),
        ({"params": {"image": "vid0"}, "files": {"label": ("s.bin", b"\x00" * 64)}}, 400, ".bin"),
        ({"params": {"image": "vid0"}, "data": {"params": "[1, 2]"}}, 400, "JSON object"),
    ]
    for kwargs, status, fragment in cases:
        r = site.call("POST", "/infer/propagate", **kwargs)
        assert r.status_code == status and fragment in detail(r), (kwargs.get("data"), r.status_code, r.text)
    r = site.call("POST", "/infer/wsi_v2/propagate", params={"image": secret})
    assert r.status_code == 400 and "WSI" in detail(r), r.text
    r = site.call("PUT", "/session/", files={"files": ("v.nii.gz", site.outside["video"].read_bytes())})
    assert r.status_code == 406, r.text  # sessions (uploads kept for an hour) are off
    # an uploaded video is fine: it is the caller's own file
    r = site.call("POST", "/infer/propagate", params={"image": "", "output": "json"},
                  files={"file": ("v.nii.gz", (site.studies / "vid2.nii.gz").read_bytes()), **site.label_file()})
    assert r.status_code == 200 and r.json()["references"] == [1, 6], r.text
    assert not site.tmp_leftovers()


@slow
def test_rejected_and_accepted_uploads_leave_no_temp_files(site):
    junk = os.urandom(200_000)  # under the limit: it reaches the endpoints
    wrong_shape = Path(write_label(site.workdir / "labels" / "wrong.nii.gz", np.ones((T, 16, 16), np.uint8)))
    video = (site.studies / "vid2.nii.gz").read_bytes()
    put_label = "/datastore/label"
    cases = [
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "final"}, "files": site.label_file(junk)}, 400),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "original"}, "files": site.label_file(junk)}, 400),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "final"},
                            "files": site.label_file(wrong_shape.read_bytes())}, 400),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "final"}, "files": site.label_file(name="l.png")}, 400),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "../../escape"}, "files": site.label_file()}, 400),
        ("PUT", put_label, {"params": {"image": "vid9", "tag": "final"}, "files": site.label_file()}, 404),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "final"}, "files": site.label_file(),
                            "data": {"params": "{not json"}}, 400),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "final"}, "files": site.label_file(),
                            "data": {"params": "null"}}, 400),
        ("PUT", put_label, {"params": {"image": "vid0", "tag": "final"},
                            "files": site.label_file(os.urandom(LIMIT_MB * 2**20 + 4096))}, 413),
        ("PUT", "/datastore/image", {"params": {"image": "new0"}, "files": {"file": ("v.nii.gz", junk)}}, 400),
        ("PUT", "/datastore/image", {"params": {"image": "../../escape"}, "files": {"file": ("v.nii.gz", video)}}, 400),
        ("PUT", "/datastore/image", {"params": {"image": "vid0"}, "files": {"file": ("v.nii.gz", video)}}, 409),
        ("PUT", "/datastore/image", {"params": {"image": "new1"}, "files": {"file": ("v.mp4", video)}}, 400),
        ("PUT", "/datastore/image", {"files": {"file": ("../../escape.nii.gz", junk)}}, 400),
        ("POST", "/infer/propagate", {"params": {"image": "vid0"}, "files": site.label_file(junk)}, 400),
        ("POST", "/infer/propagate", {"params": {"image": ""}, "files": {"file": ("v.nii.gz", junk),
                                                                         **site.label_file()}}, 400),
        ("POST", "/infer/propagate", {"params": {"image": "vid9"}, "files": site.label_file()}, 404),
        ("POST", "/infer/propagate", {"params": {"image": "vid0"}, "files": site.label_file(),
                                      "data": {"params": "{"}}, 400),
        ("POST", "/infer/wsi_v2/propagate", {"params": {"image": "vid0"}, "files": {"file": ("v.nii.gz", video)}}, 400),
        ("PUT", "/session/", {"files": {"files": ("v.nii.gz", video)}}, 406),
    ]
    for method, path, kwargs, status in cases:
        r = site.call(method, path, **kwargs)
        assert r.status_code == status, (method, path, kwargs.get("params"), r.status_code, r.text)
        assert not site.tmp_leftovers(wait=0.0), (method, path, kwargs.get("params"), site.tmp_leftovers(0.0))
    # accepted requests: their uploads and results are gone once answered
    for output in ("image", "json", None):
        r = site.call("POST", "/infer/propagate", params={"image": "vid1", **({"output": output} if output else {})},
                      files=site.label_file())
        assert r.status_code == 200, r.text
    assert site.call("GET", "/datastore/dataset").status_code == 200
    assert not site.tmp_leftovers(), site.tmp_leftovers(0.0)
    assert "new0" not in site.call("GET", "/datastore/").text and not site.escapes()


def raw_http(site: Site, head: str, body: list[bytes] = ()) -> tuple[int, dict]:
    """Send ``head`` and ``body`` on one socket (until the server stops reading); the answer's status and JSON."""
    url = urlsplit(site.server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the whole body was sent: what a limit does
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        header, _, payload = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))
        while len(payload) < length:
            payload += sock.recv(65536)
    return int(header.split()[1]), json.loads(payload)


@slow
def test_over_the_limit_bodies_are_refused_before_they_are_stored(site):
    message = f"upload too large: request bodies are limited to {LIMIT_MB} MiB"
    declared = ("PUT /datastore/label?image=vid0&tag=final HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 53687091200\r\n\r\n")
    status, answer = raw_http(site, declared)  # 50 GB announced, nothing sent: answered at once
    assert status == 413 and answer["detail"].startswith(message), answer
    chunked = ("POST /infer/propagate?image=vid0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n")
    part = (b'--b\r\nContent-Disposition: form-data; name="label"; filename="l.nii.gz"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n")
    pieces = [part] + [b"\xab" * 64 * 1024] * (LIMIT_MB * 16 + 1)
    chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    status, answer = raw_http(site, chunked, chunks)  # no length: counted while streamed
    assert status == 413 and answer["detail"].startswith(message), answer
    assert not site.tmp_leftovers()
    assert site.call("GET", "/info/").status_code == 200


@slow
def test_train_requests_cannot_run_code_or_read_other_configs(site):
    marker = site.workdir / "pwned"
    evil = site.workdir / "evil.yaml"
    evil.write_text(f"training: \"$open('{marker}', 'w').close()\"\n")
    for params, fragment in (({"config_files": [str(evil)]}, "config_files"),
                             ({"overrides": {"x": f"$open('{marker}', 'w').close()"}}, "overrides")):
        r = site.call("POST", "/train/two_shot", json=params)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 120
        status = r.json()
        while status.get("status") in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
            time.sleep(0.5)
            status = site.call("GET", "/train/").json()
        assert status["status"] == "ERROR", status
        assert any(fragment in line for line in status["details"]), status["details"]
        assert not marker.exists()
        assert not (site.workdir / "model" / "runs").exists()  # refused before a run folder was made


@slow
def test_a_burst_of_parallel_requests_gets_the_same_answers(site):
    requests_ = [
        ("POST", "/infer/propagate", {"params": {"image": "vid1", "output": "json"}}, 200),
        ("POST", "/infer/propagate", {"params": {"image": str(site.outside["video"])}}, 404),
        ("PUT", "/datastore/label", {"params": {"image": "vid2", "tag": "final"}, "files": site.label_file()}, 200),
        ("PUT", "/datastore/label", {"params": {"image": "vid0", "tag": "../../escape"},
                                     "files": site.label_file()}, 400),
        ("PUT", "/datastore/label", {"params": {"image": "vid0", "tag": "final"},
                                     "files": site.label_file(os.urandom(100_000))}, 400),
        ("GET", "/datastore/label", {"params": {"label": "vid0", "tag": "final"}}, 200),
        ("GET", "/datastore/image", {"params": {"image": str(site.outside["text"])}}, 404),
        ("POST", "/activelearning/two_frames", {"json": {}}, 200),
    ] * 2

    def send(item):
        method, path, kwargs, _ = item
        r = site.call(method, path, **kwargs)
        return r.status_code, r.content

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(send, requests_))
    for (method, path, kwargs, status), (got, content) in zip(requests_, answers):
        assert got == status, (method, path, kwargs.get("params"), got, content[:300])
        if path == "/datastore/label" and method == "GET":
            assert content == site.saved["vid0"]
    assert (site.studies / "labels" / "final" / "vid2.nii.gz").read_bytes() == site.label
    assert not site.tmp_leftovers(), site.tmp_leftovers(0.0)


@slow
def test_after_everything_the_server_serves_and_saved_labels_are_intact(site):
    assert site.server.process.poll() is None
    info = site.call("GET", "/info/").json()
    assert "propagate" in info["models"]
    store = site.call("GET", "/datastore/", params={"output": "all"}).json()["objects"]
    assert sorted(store) == sorted(VIDEOS)
    for video, data in site.saved.items():
        assert (site.studies / "labels" / "final" / f"{video}.nii.gz").read_bytes() == data
        assert site.call("GET", "/datastore/label", params={"label": video, "tag": "final"}).content == data
        assert store[video]["labels"]["final"]["info"] == site.saved_info[video]
    assert set(store["vid0"]["labels"]) == {"final"}  # no label under any other tag
    assert not site.escapes() and not site.tmp_leftovers()
    assert site.outside["video"].is_file() and site.outside["text"].read_text() == "not a video\n"
    assert "Traceback" not in site.server.log.read_text(errors="replace"), site.server.log_tail(80)
