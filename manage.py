#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")
    from django.core.management import execute_from_command_line

    from opsconsole.datadir import prepare_data_dir

    # Before the settings load: they read the data folder and the development key, never write.
    prepare_data_dir()

    execute_from_command_line(sys.argv)
