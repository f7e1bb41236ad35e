import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness adds seconds to a suite that creates users in every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_transport_outlives_its_test():
    # The send loop keeps relay connections open between batches; a test's relay is gone
    # when the test ends, and a later test may reuse its sender's id.
    yield
    from postroom.delivery.transports import open_transports

    open_transports.close_all()


@pytest.fixture(autouse=True)
def _open_pixel_hits_written_in_the_request(settings):
    # No writer thread: in a test it would use a connection of its own, which cannot see the
    # test's uncommitted rows. tracking.hits' batches have tests of their own.
    settings.HIT_BATCHES = False
    settings.TRACK_BATCHES = False  # the same for the track API's batches (tracking.fasttrack)
