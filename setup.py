"""The one packaging fact setup.cfg cannot state (everything else is there): the Hub card templates at the
repository's top level (`hub_cards/`) ship inside the package as `chatterbox_latam.hub_cards`. A package mapped onto
a folder outside the package has to be listed beside the ones found, and setup.cfg's `packages = find:` takes no
additions."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["chatterbox_latam*"]), "chatterbox_latam.hub_cards"],
    package_dir={"chatterbox_latam.hub_cards": "hub_cards"},
)
