"""`--plugins-dir` on any folder: every problem is one line naming the file and the fix, with
exit 1 for a bad plugin and 2 for bad usage (a missing folder, a package folder); never a
traceback. And `arkd-bench plugins` shows each option's description in its table."""
import textwrap

import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins import PluginLoadError, PluginsDirError, load_plugins, plugin_files_in

runner = CliRunner()

BAD_PLUGINS = {
    # a Metric handed to the weighting hook
    "wrong_kind": ("""
        from arkd_bench import Metric, hookimpl

        class Exact(Metric):
            name = "exact"

            def score(self, predictions, references):
                return [0.0 for _ in predictions]

        @hookimpl
        def arkd_register_weightings(register):
            register(Exact)
        """, ["wrong_kind.py:11:", "must be a subclass of WeightingStrategy", "register it from `arkd_register_metrics`"]),
    "misspelt": ("""
        from arkd_bench import hookimpl

        @hookimpl
        def arkd_register_weighting(register):
            pass
        """, ["misspelt.py:3:", "'arkd_register_weighting'", "did you mean 'arkd_register_weightings'?"]),
    "unmarked": ("""
        def arkd_register_metrics(register):
            pass
        """, ["unmarked.py:1:", "without `@hookimpl`", "decorate it with `@arkd_bench.hookimpl`"]),
    "raises": ("""
        from arkd_bench import hookimpl

        @hookimpl
        def arkd_register_metrics(register):
            register(NotDefinedAnywhere)
        """, ["raises.py:5:", "failed in `arkd_register_metrics`", "NameError"]),
    "bad_arguments": ("""
        from arkd_bench import hookimpl

        @hookimpl
        def arkd_register_metrics(reg):
            pass
        """, ["bad_arguments.py:3:", "takes {'reg'}, which the hook does not pass", "(register)"]),
    "options_not_a_model": ("""
        from arkd_bench import Metric, hookimpl

        class Exact(Metric):
            name = "exact_dict"
            Options = dict

            def score(self, predictions, references):
                return [0.0 for _ in predictions]

        @hookimpl
        def arkd_register_metrics(register):
            register(Exact)
        """, ["options_not_a_model.py:12:", "not a pydantic model", "arkd_bench.PluginOptions"]),
    "duplicate": ("""
        from arkd_bench import Metric, hookimpl

        class Rouge(Metric):
            name = "rougeL"

            def score(self, predictions, references):
                return [0.0 for _ in predictions]

        @hookimpl
        def arkd_register_metrics(register):
            register(Rouge)
        """, ["metric 'rougeL' is registered by both", "duplicate.py:11)", "plugins/builtin/metrics.py:"]),
}


def plugin_folder(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(BAD_PLUGINS[name][0]).lstrip())
    return folder


def one_line(result, exit_code):
    """The command exited by itself (no exception escaped) with one line of error."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def commands(folder, tmp_path):
    return [["plugins", "--format", "text", "--plugins-dir", str(folder)],
            ["new-plugin", "fresh", "--dir", str(tmp_path / "new"), "--plugins-dir", str(folder)]]


@pytest.mark.parametrize("name", list(BAD_PLUGINS))
def test_a_bad_plugin_is_one_line_naming_its_file_and_exit_1(name, tmp_path):
    folder = plugin_folder(tmp_path, name)
    for args in commands(folder, tmp_path):
        line = one_line(runner.invoke(app, args), 1)
        assert line.startswith("error: ") and str(folder) in line
        for part in BAD_PLUGINS[name][1]:
            assert part in line, line
    assert not (tmp_path / "new").exists()


def test_a_missing_folder_or_a_file_is_bad_usage(tmp_path):
    (tmp_path / "plugin.py").write_text("")
    for target, why in ((tmp_path / "nowhere", "no such folder"), (tmp_path / "plugin.py", "not a folder")):
        for args in commands(target, tmp_path):
            line = one_line(runner.invoke(app, args), 2)
            assert line == f"usage error: --plugins-dir {target}: {why}" or line.startswith(
                f"usage error: --plugins-dir {target}: {why};"), line


def test_a_package_folder_says_what_was_expected(tmp_path):
    """A scaffolded package (pyproject.toml), its module folder (__init__.py) and the folder
    holding it: none is a folder of single-file plugins; each says to `pip install -e` it."""
    result = runner.invoke(app, ["new-plugin", "pkg", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    dist = tmp_path / "arkd-bench-pkg"
    for folder, has in ((dist, "pyproject.toml"), (dist / "arkd_bench_pkg", "__init__.py"), (tmp_path, None)):
        for args in commands(folder, tmp_path):
            line = one_line(runner.invoke(app, args), 2)
            assert line.startswith(f"usage error: --plugins-dir {folder}: ")
            if has:
                assert f"a Python package (it has {has})" in line
                assert "expects a folder of single-file .py plugins" in line
                assert f"`pip install -e {dist}`" in line
            else:
                assert "no plugin files" in line and "arkd-bench-pkg: `pip install -e` a package instead" in line
    with pytest.raises(PluginsDirError, match="a Python package"):
        load_plugins(plugins_dirs=[dist], autoload=False)


def test_an_empty_folder_is_bad_usage_not_silence(tmp_path):
    (tmp_path / "_private.py").write_text("")
    with pytest.raises(PluginsDirError, match="no plugin files"):
        plugin_files_in(tmp_path)


def test_strict_mode_and_a_good_plugin_still_work(tmp_path):
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "good.py").write_text(textwrap.dedent(BAD_PLUGINS["wrong_kind"][0]).replace(
        "arkd_register_weightings", "arkd_register_metrics"))
    (folder / "broken.py").write_text("import not_a_module_anywhere\n")
    plugins = load_plugins(plugins_dirs=[folder], autoload=False)
    assert "exact" in plugins.registry("metric").names()
    assert [f.name for f in plugins.failures] == ["broken.py"]  # an import failure is skipped, as before
    with pytest.raises(PluginLoadError, match="broken.py"):
        load_plugins(plugins_dirs=[folder], autoload=False, strict=True)


def test_a_plugin_calling_sys_exit_is_skipped_not_the_end_of_the_command(tmp_path):
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n")
    result = runner.invoke(app, ["plugins", "--format", "text", "--plugins-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "warning: plugin 'quits.py'" in result.output and "SystemExit: 3" in result.output


def test_the_table_shows_option_descriptions_and_plugin_text_as_written(tmp_path):
    (tmp_path / "bracketed.py").write_text(textwrap.dedent('''
        from pydantic import Field

        from arkd_bench import Metric, PluginOptions, hookimpl

        class Options(PluginOptions):
            cutoff: float = Field(0.5, description="scores below [cutoff] count as [/b] zero")

        class Bracketed(Metric):
            """Scores in [0, 100] [bold]as written[/bold]."""

            name = "bracketed"
            Options = Options

            def score(self, predictions, references):
                return [0.0 for _ in predictions]

        @hookimpl
        def arkd_register_metrics(register):
            register(Bracketed)
        '''))
    result = runner.invoke(app, ["plugins", "--format", "table", "--plugins-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows[("metric", "bracketed")] == [
        "bracketed.py", "cutoff:float=0.5scoresbelow[cutoff]countas[/b]zero", "Scoresin[0,100][bold]aswritten[/bold]."]
    assert rows[("divergence", "fkl")][1] == "temperature:float=1.0LogitsofbothmodelsaredividedbyTbeforethesoftmax."


def table_rows(output):
    """(kind, name) -> [origin, options, description] of a rich table printed at 80 columns,
    each cell's folded lines joined, without spaces (rich may fold inside a word)."""
    rows, current = {}, None
    for line in output.splitlines():
        if line.count("│") != 6:
            continue
        cells = [c.strip() for c in line.split("│")[1:6]]
        if cells[0]:
            current = [cells[0], cells[1], [], [], []]
            rows[(cells[0], cells[1])] = current
        elif cells[1]:
            current[1] += cells[1]  # a long name folded
        for i in range(3):
            if cells[2 + i]:
                current[2 + i].append(cells[2 + i])
    return {key: ["".join("".join(parts).split()) for parts in rest] for key, (_, _, *rest) in rows.items()}


def _installed(tmp_path, monkeypatch, source: str):
    """A real installed distribution with an `arkd_bench` entry point: a module and its
    .dist-info folder on sys.path, found by importlib.metadata like any pip install."""
    site = tmp_path / "site"
    (site / "broken_ep-0.1.dist-info").mkdir(parents=True)
    (site / "broken_ep-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-ep\nVersion: 0.1\n")
    (site / "broken_ep-0.1.dist-info" / "entry_points.txt").write_text("[arkd_bench]\nbroken = broken_ep\n")
    (site / "broken_ep.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(site))


def test_an_installed_plugin_with_a_bad_hook_is_skipped_not_the_end_of_every_command(tmp_path, monkeypatch):
    _installed(tmp_path, monkeypatch, """
        from arkd_bench import hookimpl

        @hookimpl
        def arkd_register_weightings(reg):
            pass
        """)
    plugins = load_plugins(autoload=True)
    assert plugins.pm.get_plugin("broken") is None
    [failure] = [f for f in plugins.failures if f.name == "broken"]
    assert "arkd_register_weightings takes {'reg'}" in failure.error
    assert "fixed" in plugins.registries["weighting"].names()
    with pytest.raises(PluginLoadError, match="reg"):
        load_plugins(autoload=True, strict=True)
