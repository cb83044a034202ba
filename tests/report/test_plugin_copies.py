"""`rundir.plugin_files`: what a run keeps of its plugin files and how they are found again,
without running a grid."""
import json
import shutil

from arkd_bench.plugins import load_plugins
from arkd_bench.rundir.plugin_files import find_plugin_files, keep_plugin_files, plugin_digest

METRIC = ("from arkd_bench import Metric, hookimpl\n\n"
          "class {cls}(Metric):\n"
          "    name = '{name}'\n"
          "    higher_is_better = False\n\n"
          "    def score(self, predictions, references):\n"
          "        return [float(len(p.split())) for p in predictions]\n\n"
          "@hookimpl\n"
          "def arkd_register_metrics(register):\n"
          "    register({cls})\n")


def make_run(tmp_path):
    """A single-file plugin and a package plugin (with a data file beside its code), loaded
    and kept by a run folder; then the originals are moved away."""
    src = tmp_path / "src"
    (src / "wordpkg").mkdir(parents=True)
    (src / "single.py").write_text(METRIC.format(name="single_words", cls="Single"))
    (src / "wordpkg" / "__init__.py").write_text(METRIC.format(name="pkg_words", cls="Pkg"))
    (src / "wordpkg" / "helpers.py").write_text("UNUSED = 1\n")
    listed = [src / "single.py", src / "wordpkg" / "__init__.py"]
    plugins = load_plugins(listed, autoload=False)
    run = tmp_path / "run"
    records = keep_plugin_files(run, plugins, listed)
    (run / "run.json").write_text(json.dumps({"recipe": "r", "plugins": records, "cells": []}))
    (run / "recipe.yaml").write_text("name: r\n")
    digests = {r["name"]: plugin_digest(p) for r, p in zip(records, [listed[0], listed[1]])}
    shutil.move(src, tmp_path / "gone")
    return run, records, digests


def test_single_files_and_packages_are_copied_with_their_hashes_and_names(tmp_path):
    run, records, _ = make_run(tmp_path)
    by_name = {r["name"]: r for r in records}
    assert by_name["single.py"]["file"] == "plugins/single.py"
    assert by_name["single.py"]["registers"] == {"metric": ["single_words"]}
    assert by_name["wordpkg"]["file"] == "plugins/wordpkg/__init__.py"
    assert by_name["wordpkg"]["registers"] == {"metric": ["pkg_words"]}
    assert (run / "plugins" / "wordpkg" / "helpers.py").read_text() == "UNUSED = 1\n"
    assert by_name["wordpkg"]["sha256"] == plugin_digest(run / "plugins" / "wordpkg" / "__init__.py")


def test_the_copies_are_found_and_load_once_the_originals_are_gone(tmp_path):
    run, _, _ = make_run(tmp_path)
    found = find_plugin_files([run])
    assert not found.missing and not found.warnings
    assert found.files == {"single.py": run / "plugins" / "single.py",
                           "wordpkg": run / "plugins" / "wordpkg" / "__init__.py"}
    plugins = load_plugins(list(found.files.values()), autoload=False)
    assert {"single_words", "pkg_words"} <= set(plugins.registry("metric").names())


def test_a_changed_package_file_and_a_missing_copy_are_reported(tmp_path):
    run, _, _ = make_run(tmp_path)
    (run / "plugins" / "wordpkg" / "helpers.py").write_text("UNUSED = 2\n")
    (run / "plugins" / "single.py").unlink()
    found = find_plugin_files([run], plugins_dirs=[tmp_path / "elsewhere"])
    assert [w.split(": ", 1)[1].split(" (")[0] for w in found.warnings] == ["changed since the run"]
    (missing,) = found.missing
    assert missing.name == "single.py" and missing.registers == {"metric": ["single_words"]}
    assert missing.what() == "it registers metric 'single_words'"
    assert str(tmp_path / "elsewhere") in missing.where()
