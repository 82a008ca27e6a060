"""The settings of the portals that end-to-end tests start (testkit/livesite.py): the portal's
own, with one change. Passwords are hashed with a fast hasher: PBKDF2's 0.6 s a sign-in or a
new user was most of a browser test's setup, and no test is about the hasher's strength."""

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
