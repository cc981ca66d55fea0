"""The application, the top layer: the ``advkit`` command (:mod:`advkit.app.cli`), each subcommand's
command line (``*_cli`` modules) and ``advkit demo`` (:mod:`advkit.app.demo`, with its GAN section in
:mod:`advkit.app.gan_demo`). Nothing below imports it."""
