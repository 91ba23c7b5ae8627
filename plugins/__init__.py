"""Built-in plugins. Installed as ``mtl_bt.plugins``; each subpackage is one
entry point in the ``mtl_bt`` group, loaded exactly like a third-party plugin."""
