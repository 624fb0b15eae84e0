"""QQ plugins. :data:`PLUGINS` is the explicit registry :func:`bot.app.create_app` loads,
in this order (no directory scanning, nothing registered on import of this package).

Each plugin validates its own config slice (``get_plugin_config``), a nested table named after
the plugin: ``create_app(..., plugin_config={"draw": {"daily_quota": 5}})``, or NoneBot's
``.env`` with ``__`` between names, e.g. ``DRAW__BLOCKED_WORDS='["..."]'``,
``CHAT__PERSONA="..."``, ``SEE__MAX_IMAGE_BYTES=5242880``.
"""

PLUGINS = (
    "bot.plugins.help",
    "bot.plugins.status",
    "bot.plugins.cancel",
    "bot.plugins.draw",
    "bot.plugins.say",
    "bot.plugins.see",
    "bot.plugins.chat",
)
