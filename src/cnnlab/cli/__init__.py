"""The thin command layer. Each ``cmd_<name>.py`` module is one sub-command.

A command module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import torch and the heavy parts of cnnlab *inside*
``run`` so that ``cnnlab --help`` stays instant.
"""
