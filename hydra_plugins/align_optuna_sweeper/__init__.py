"""`hydra/sweeper=align_optuna`: hydra-optuna-sweeper's sweeper, continued where a study stopped.

A package under the `hydra_plugins` namespace, where Hydra looks for plugins (align_cli.cli also imports
it, since an editable install hides it from Hydra's scan).
"""
