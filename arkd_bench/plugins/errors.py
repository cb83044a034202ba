"""The errors of plugin loading (a bad plugin, a bad `--plugins-dir`)."""


class PluginLoadError(Exception):
    """A plugin could not be loaded and strict mode is on, a plugin file does not exist, a
    plugin implements a hook that does not exist, or a hook implementation raised."""


class PluginsDirError(PluginLoadError):
    """`--plugins-dir` names no folder of single-file plugins: bad usage, not a bad plugin."""
