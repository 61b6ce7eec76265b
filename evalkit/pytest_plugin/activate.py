"""Activate evalkit's short flags (``--model``, ``--seed``, ``--n``, ...) from a project's root
conftest.py, as ``evalkit = true`` in its ini file does::

    pytest_plugins = ("evalkit.pytest_plugin.activate",)

The plugin itself is loaded by its entry point wherever evalkit is installed; this module only
marks the project as one that uses evalkit (``evalkit.pytest_plugin.options``)."""
