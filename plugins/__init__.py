"""Built-in cstp plugins (installed as the package ``cstp_plugins``).

They are registered through the ``"cstp"`` entry-point group exactly like third-party
plugins and use only :mod:`cstp_cli.api` and :mod:`cstp_cli.hookspecs`.
"""
