import os

from django.core.wsgi import get_wsgi_application

from opsconsole.datadir import prepare_data_dir

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")
# Before the settings load: they read the data folder and the development key, never write.
prepare_data_dir()
application = get_wsgi_application()
