"""steppatch.commands: the choices the home commands make, driven with a fake home and a fake
cluster (and once with a real home over the in-memory fake mirror). No subprocess runs here.

Every input error is checked to come before the home is opened: ``open_home`` counts its calls.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from packaging.version import Version

from steppatch import commands
from steppatch.cluster import ClusterStatus, NodeStatus
from steppatch.commands import ApplyOutcome, ApplyRoute, MadePatch
from steppatch.config import NodeEntry
from steppatch.errors import InputError
from steppatch.model import RecipeKind
from steppatch.plan import SyncMode
from steppatch.recipe import dump_recipe, pinned_recipe
from steppatch.versions import parse_pin
from tests.unit.test_pipeline import World

NODE = NodeEntry("b", "/elsewhere/b", "")


# Fakes only: a test that starts a process fails.
pytestmark = pytest.mark.usefixtures("no_subprocess")


class FakeHome:
    """The parts of :class:`steppatch.Home` the commands use, recording each call."""

    def __init__(self, nodes: tuple[NodeEntry, ...] = (), path: Path = Path("/h")) -> None:
        self.files = SimpleNamespace(config=SimpleNamespace(nodes=nodes))
        self.path = path
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _call(self, name: str, *args: Any, **kwargs: Any) -> str:
        self.calls.append((name, args, kwargs))
        return f"{name} result"

    def __getattr__(self, name: str) -> Any:
        if name in {"apply", "apply_patch", "prepare", "prepare_offline", "verify", "snapshot",
                    "stop", "start", "select_mirror", "add_node"}:
            def call(*args: Any, **kwargs: Any) -> Any:
                result = self._call(name, *args, **kwargs)
                return ("info", 123) if name == "prepare_offline" else result
            return call
        if name == "mirrors":
            return lambda: [("m", True)]
        raise AttributeError(name)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class FakeCluster:
    """A cluster of ``home``: ``versions`` per node name (this node first)."""

    def __init__(self, home: FakeHome, versions: dict[str, dict[str, Version]]) -> None:
        self.home = home
        self.versions = versions
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.self_name = "a"

    def apply(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("apply", args, kwargs))
        return "cluster report"

    def snapshot(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("snapshot", args, kwargs))
        return "cluster snapshot"

    def status(self) -> ClusterStatus:
        self.calls.append(("status", (), {}))
        return ClusterStatus(
            tuple(NodeStatus(n, f"/{n}", is_self=i == 0, versions=v)
                  for i, (n, v) in enumerate(self.versions.items()))
        )

    def entries(self) -> list[NodeEntry]:
        return [NODE]


class Opener:
    """``open_home`` that counts its calls."""

    def __init__(self, home: Any) -> None:
        self.home = home
        self.opened = 0

    def __call__(self) -> Any:
        self.opened += 1
        return self.home


def cluster_of(versions: dict[str, dict[str, Version]]) -> Any:
    made: list[FakeCluster] = []

    def make(home: Any) -> FakeCluster:
        made.append(FakeCluster(home, versions))
        return made[-1]

    make.made = made  # type: ignore[attr-defined]
    return make


SAME = {"a": {"core": Version("1.0")}, "b": {"core": Version("1.0")}}
MIXED = {"a": {"core": Version("2.0")}, "b": {"core": Version("1.0")}}


@pytest.fixture
def patch_file(tmp_path: Path) -> Path:
    """A file that is a tar archive (what ``is_patch_file`` looks for)."""
    path = tmp_path / "fix.spr"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("patch.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    return path


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    path = tmp_path / "target.spr"
    recipe = pinned_recipe(
        RecipeKind.SNAPSHOT, {"core": Version("1.0")}, name="t", environment="e" * 32,
        fingerprint="f" * 64,
    )
    path.write_bytes(dump_recipe(recipe))
    return path


# --- the route of an apply ------------------------------------------------------------------------


def test_the_route_a_patch_file_then_the_cluster_then_this_node(patch_file: Path) -> None:
    alone, clustered = FakeHome(), FakeHome(nodes=(NODE,))
    assert commands.apply_route(alone, ["to:a.spr"]) is ApplyRoute.PLAIN
    assert commands.apply_route(clustered, ["to:a.spr"]) is ApplyRoute.CLUSTER
    assert commands.apply_route(clustered, ["to:a.spr"], local=True) is ApplyRoute.PLAIN
    # a patch file is for this node only, whatever the cluster
    assert commands.apply_route(clustered, [str(patch_file)]) is ApplyRoute.PATCH
    assert commands.apply_route(alone, [str(patch_file)]) is ApplyRoute.PATCH
    # one patch among several references is not a patch apply
    assert commands.apply_route(alone, [str(patch_file), "to:a.spr"]) is ApplyRoute.PLAIN


def test_a_home_with_nodes_applies_to_the_cluster() -> None:
    home = FakeHome(nodes=(NODE,))
    clusters = cluster_of(SAME)
    outcome = commands.apply(
        Opener(home), ["to:a.spr,to:b.spr"], hot=True, sync=True, cluster_of=clusters
    )
    assert outcome == ApplyOutcome(ApplyRoute.CLUSTER, cluster="cluster report")  # type: ignore[arg-type]
    (cluster,) = clusters.made
    assert cluster.calls == [
        ("apply", (["to:a.spr", "to:b.spr"],), {"hot": True, "sync": SyncMode.KEEP})
    ]
    assert home.calls == []  # not this node alone


def test_a_plain_apply_splits_comma_lists_and_passes_the_sync_mode() -> None:
    home = FakeHome()
    outcome = commands.apply(
        Opener(home), ["to:a.spr, to:b.spr", ""], sync=True, syncmode=SyncMode.DELETE,
        cluster_of=cluster_of(SAME),
    )
    assert isinstance(outcome, ApplyOutcome)
    assert (outcome.route, outcome.report, outcome.mixed) == (
        ApplyRoute.PLAIN, "apply result", None
    )
    assert home.calls == [
        ("apply", (["to:a.spr", "to:b.spr"],), {"hot": False, "sync": SyncMode.DELETE})
    ]


def test_a_patch_file_is_applied_as_one_with_force(patch_file: Path) -> None:
    home = FakeHome(nodes=(NODE,))
    clusters = cluster_of(SAME)
    outcome = commands.apply(Opener(home), [str(patch_file)], force=True, cluster_of=clusters)
    assert isinstance(outcome, ApplyOutcome)
    assert (outcome.route, outcome.report) == (ApplyRoute.PATCH, "apply_patch result")
    assert home.calls == [("apply_patch", (str(patch_file),), {"force": True, "hot": False})]
    assert [c[0] for c in clusters.made[0].calls] == ["status"]  # never a cluster apply


def test_sync_with_a_patch_file_is_refused_and_nothing_is_applied(patch_file: Path) -> None:
    home = FakeHome()
    with pytest.raises(InputError, match="--sync does not go with a patch file"):
        commands.apply(Opener(home), [str(patch_file)], sync=True, cluster_of=cluster_of(SAME))
    assert home.calls == []


@pytest.mark.parametrize(("versions", "mixed"), [(SAME, False), (MIXED, True)])
def test_a_local_apply_in_a_cluster_says_when_it_left_it_mixed(
    versions: dict[str, dict[str, Version]], mixed: bool
) -> None:
    home = FakeHome(nodes=(NODE,))
    outcome = commands.apply(
        Opener(home), ["to:a.spr"], local=True, cluster_of=cluster_of(versions)
    )
    assert isinstance(outcome, ApplyOutcome)
    assert outcome.route is ApplyRoute.PLAIN and home.names() == ["apply"]
    assert (outcome.mixed is not None) == mixed
    if mixed:
        assert outcome.mixed is not None and not outcome.mixed.consistent


def test_a_home_without_nodes_asks_no_cluster() -> None:
    clusters = cluster_of(MIXED)
    commands.apply(Opener(FakeHome()), ["to:a.spr"], cluster_of=clusters)
    assert clusters.made == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["to:a.spr"], {"accessmode": "sideways"}, "--accessmode 'sideways': expected online"),
        (["to:a.spr"], {"syncmode": SyncMode.DELETE}, "--syncmode goes with --sync"),
        ([" , ", ""], {}, "no reference given"),
        (["to:a.spr"], {"accessmode": "offline"}, "needs both --target"),
    ],
)
def test_bad_apply_options_are_refused_before_the_home_is_opened(
    args: list[str], kwargs: dict[str, Any], message: str
) -> None:
    opener = Opener(FakeHome())
    with pytest.raises(InputError, match=message):
        commands.apply(opener, args, cluster_of=cluster_of(SAME), **kwargs)
    assert opener.opened == 0


# --- offline patches and prepare ------------------------------------------------------------------


def test_offline_apply_makes_a_patch_for_the_target_snapshot(
    snapshot_file: Path, tmp_path: Path
) -> None:
    home = FakeHome()
    out = tmp_path / "out.spr"
    made = commands.apply(
        Opener(home), ["to:a.spr"], accessmode="offline", target=snapshot_file, output=out,
        sync=True, hot=True,  # what applying the patch takes, not making it: ignored here
    )
    assert made == MadePatch("info", 123, out)  # type: ignore[arg-type]
    ((name, (refs, target, output), _),) = home.calls
    assert (name, refs, output) == ("prepare_offline", ["to:a.spr"], out)
    assert target.kind is RecipeKind.SNAPSHOT and target.environment == "e" * 32


def test_prepare_makes_a_plan_or_with_target_and_output_a_patch(
    snapshot_file: Path, tmp_path: Path
) -> None:
    home = FakeHome()
    assert commands.prepare(Opener(home), ["to:a.spr,to:b.spr"]) == "prepare result"
    assert home.calls == [("prepare", (["to:a.spr", "to:b.spr"],), {})]
    home.calls.clear()
    made = commands.prepare(Opener(home), ["to:a.spr"], target=snapshot_file,
                            output=tmp_path / "p.spr")
    assert isinstance(made, MadePatch) and home.names() == ["prepare_offline"]


@pytest.mark.parametrize("which", ["target", "output"])
def test_prepare_with_half_an_offline_request_is_refused(
    which: str, snapshot_file: Path, tmp_path: Path
) -> None:
    opener = Opener(FakeHome())
    given = {"target": snapshot_file} if which == "target" else {"output": tmp_path / "p"}
    with pytest.raises(InputError, match=r"needs both --target SNAPSHOT\.spr and --output PATCH"):
        commands.prepare(opener, ["to:a.spr"], **given)  # type: ignore[arg-type]
    assert opener.opened == 0 and not (tmp_path / "p").exists()


def test_an_unreadable_target_is_refused_naming_the_option(tmp_path: Path) -> None:
    opener = Opener(FakeHome())
    missing = tmp_path / "nope.spr"
    with pytest.raises(InputError, match=f"--target {missing}: No such file"):
        commands.make_patch(opener, ["to:a.spr"], missing, tmp_path / "out")
    assert opener.opened == 0 and not (tmp_path / "out").exists()


# --- pins, sync modes, the home's path, input files -----------------------------------------------


def test_pins_parse_to_versions_a_later_pin_winning() -> None:
    assert parse_pin("core==1.0.2") == ("core", Version("1.0.2"))
    assert commands.parse_pins(["core==1.0", "addon==2.1", "core==1.1"]) == {
        "core": Version("1.1"), "addon": Version("2.1")
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("core>=1.0", "expected NAME==VERSION"),
        ("core==1.*", "expected NAME==VERSION"),
        ("core==1.0,!=1.1", "expected NAME==VERSION"),
        ("core", "expected NAME==VERSION"),
        ("Core_X==1.0", "a component name is lowercase"),
        ("core[extra]==1.0", "extras, URLs and markers are not allowed"),
        ("==1.0", "invalid requirement"),
    ],
)
def test_a_bad_pin_is_refused_naming_it_before_the_repository_is_opened(
    text: str, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(InputError) as caught:
        commands.release(tmp_path / "no-repo", "r.spr", ["ok==1.0", text])
    assert str(caught.value).startswith(f"--pin {text!r}: ")
    assert problem in str(caught.value)
    assert not (tmp_path / "no-repo").exists()


def test_sync_mode() -> None:
    assert commands.sync_mode(False, None) is None
    assert commands.sync_mode(True, None) is SyncMode.KEEP
    assert commands.sync_mode(True, SyncMode.DELETE) is SyncMode.DELETE
    with pytest.raises(InputError, match="--syncmode goes with --sync"):
        commands.sync_mode(False, SyncMode.KEEP)


def test_the_home_is_the_option_else_the_environment_else_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"STEPPATCH_HOME": str(tmp_path / "env")}
    assert commands.home_path(tmp_path / "given", env) == tmp_path / "given"
    assert commands.home_path(None, env) == tmp_path / "env"
    monkeypatch.chdir(tmp_path)
    assert commands.home_path(None, {}) == tmp_path
    assert commands.home_path(None, {"STEPPATCH_HOME": ""}) == tmp_path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cert": "client.crt"}, "--cert and --key go together"),
        ({"key": "client.key"}, "--cert and --key go together"),
        ({"root": "missing.json"}, "--root .*missing.json: No such file"),
        ({"ca": "missing.crt"}, "--ca .*missing.crt: No such file"),
        ({"cert": "missing.crt", "key": "client.key"}, "--cert .*missing.crt: No such file"),
    ],
)
def test_init_refuses_bad_input_files_and_makes_no_home(
    options: dict[str, str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "client.crt").write_text("cert")
    (tmp_path / "client.key").write_text("key")
    given = {k: tmp_path / v for k, v in options.items()}
    with pytest.raises(InputError, match=message):
        commands.init_home(tmp_path / "home", "file:///nowhere", **given)  # type: ignore[arg-type]
    assert not (tmp_path / "home").exists()


def test_verify_against_an_unreadable_snapshot_is_refused_before_the_home_is_opened(
    tmp_path: Path
) -> None:
    opener = Opener(FakeHome())
    with pytest.raises(InputError, match="--against"):
        commands.verify(opener, tmp_path / "nope.spr")
    assert opener.opened == 0
    assert commands.verify(opener) == "verify result"


# --- snapshot, restart, mirrors, nodes ------------------------------------------------------------


def test_snapshot_of_this_node_or_of_the_cluster(tmp_path: Path) -> None:
    home = FakeHome()
    clusters = cluster_of(SAME)
    out = tmp_path / "s.spr"
    assert commands.snapshot(Opener(home), out, full=True, cluster_of=clusters) == (
        "snapshot result"
    )
    assert home.calls == [("snapshot", (out,), {"full": True})]
    assert commands.snapshot(Opener(home), out, cluster=True, cluster_of=clusters) == (
        "cluster snapshot"
    )
    assert clusters.made[0].calls == [("snapshot", (out,), {})]


def test_a_full_cluster_snapshot_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    opener = Opener(FakeHome())
    with pytest.raises(InputError, match="--full is per node"):
        commands.snapshot(opener, tmp_path / "s.spr", full=True, cluster=True,
                          cluster_of=cluster_of(SAME))
    assert opener.opened == 0 and not (tmp_path / "s.spr").exists()


def test_restart_stops_then_starts() -> None:
    home = FakeHome()
    commands.restart(home, force=True)  # type: ignore[arg-type]
    assert home.calls == [("stop", (), {}), ("start", (), {"force": True})]


def test_mirrors_selects_first_when_asked() -> None:
    home = FakeHome()
    assert commands.select_and_list_mirrors(home) == [("m", True)]  # type: ignore[arg-type]
    assert home.calls == []
    commands.select_and_list_mirrors(home, "https://m2")  # type: ignore[arg-type]
    assert home.calls == [("select_mirror", ("https://m2",), {})]


def test_nodes_lists_this_node_first(tmp_path: Path) -> None:
    rows = commands.list_nodes(FakeHome(path=tmp_path), cluster_of(SAME))  # type: ignore[arg-type]
    assert [(r.name, r.location, r.is_self) for r in rows] == [
        ("a", str(tmp_path), True), ("b", "/elsewhere/b", False)
    ]


def test_a_node_on_a_relative_path_is_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert commands.node_location("other/home") == str(tmp_path / "other" / "home")
    assert commands.node_location("ssh://u@h:2222/srv/home") == "ssh://u@h:2222/srv/home"
    assert commands.node_location("file:///srv/home") == "file:///srv/home"
    home = FakeHome()
    assert commands.add_node(Opener(home), "b", "b-home", "sp") == str(tmp_path / "b-home")
    assert home.calls == [("add_node", (NodeEntry("b", str(tmp_path / "b-home"), "sp"),), {})]


# --- with a real home -----------------------------------------------------------------------------


def test_a_plain_apply_on_a_real_home_over_the_fake_mirror(tmp_path: Path) -> None:
    world = World(tmp_path)
    outcome = commands.apply(world.home, ["to:core/1.0/core-1.0.spr,to:addon/1.0/addon-1.0.spr"])
    assert isinstance(outcome, ApplyOutcome) and outcome.route is ApplyRoute.PLAIN
    assert outcome.report is not None and outcome.mixed is None
    assert {n: str(v) for n, v in world.files.state().versions().items()} == {
        "core": "1.0", "addon": "1.0"
    }
    assert world.service.calls == ["stop", "start"]
    plan = commands.prepare(world.home, ["to:core/2.0/core-2.0.spr"])
    assert not isinstance(plan, MadePatch)
    assert [c.name for c in plan.changes] == ["core"]
    assert world.live("bin/core") == b"core 1\n"  # prepare leaves the tree as it was


# --- enroll ---------------------------------------------------------------------------------------


@pytest.fixture
def enroll_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The library's two enrollment steps, replaced by recorders."""
    import steppatch.enroll

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> str:
            calls.append((name, args, kwargs))
            return f"{name} result"
        return record

    monkeypatch.setattr(steppatch.enroll, "request_certificate", recorder("request"))
    monkeypatch.setattr(steppatch.enroll, "install_certificate", recorder("install"))
    return calls


def test_enroll_requests_under_a_name_or_the_manuals_mirror_form(
    enroll_calls: list[Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    assert commands.enroll(home, "shop-01", force=True) == (None, "request result", None)
    assert commands.enroll(home, alias="mirror:shop-02:mirror.example") == (
        None, "request result", "mirror.example"
    )
    # the manuals' form as the argument, and given twice the same way
    assert commands.enroll(home, "mirror:shop-03:m", alias="mirror:shop-03:m").host == "m"
    assert commands.enroll(home, "mirror:shop-04:m2").host == "m2"
    assert enroll_calls == [
        ("request", (home, "shop-01"), {"force": True}),
        ("request", (home, "shop-02"), {"force": False}),
        ("request", (home, "shop-03"), {"force": False}),
        ("request", (home, "shop-04"), {"force": False}),
    ]


def test_enroll_installs_the_signed_certificate(enroll_calls: list[Any], tmp_path: Path) -> None:
    cert, ca = tmp_path / "shop.crt", tmp_path / "ca.crt"
    assert commands.enroll(tmp_path, install=cert, ca=ca) == ("install result", None, None)
    assert enroll_calls == [("install", (tmp_path, cert), {"ca": ca})]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "give SYSTEM_NAME \\(make a request\\) or --install CERT"),
        (("shop-01",), {"install": Path("c.crt")}, "give SYSTEM_NAME \\(make a request\\)"),
        (("shop-01",), {"alias": "mirror:shop-01:m"}, "give SYSTEM_NAME or --enroll"),
        ((), {"alias": "mirror:shop-01"}, "--enroll=mirror:shop-01: expected mirror:SYSTEM_NAME"),
        ((), {"alias": "host:shop-01:m"}, "expected mirror:SYSTEM_NAME:HOST"),
        (("mirror::m",), {}, "--enroll=mirror::m: expected"),
    ],
)
def test_conflicting_enroll_arguments_are_refused_before_the_home_is_touched(
    args: tuple[str, ...], kwargs: dict[str, Any], message: str, enroll_calls: list[Any],
    tmp_path: Path,
) -> None:
    with pytest.raises(InputError, match=message):
        commands.enroll(tmp_path, *args, **kwargs)
    assert enroll_calls == [] and list(tmp_path.iterdir()) == []
