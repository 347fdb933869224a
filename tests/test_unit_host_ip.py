"""One policy for the address a node listens on (zray start, zray.launch, Train)."""
import socket

import pytest

from zray.launch import launcher, plan
from zray.transport import host_ip


def test_loopback_seeds_give_loopback_of_their_family():
    assert host_ip.own_ip(seed="127.0.0.1")[0] == "127.0.0.1"
    assert host_ip.own_ip(seed="localhost")[0] == "127.0.0.1"
    assert host_ip.own_ip(seed="::1")[0] == "::1"


def test_the_loopback_interface_gives_its_address():
    assert host_ip.own_ip("lo") == ("127.0.0.1", "the address of interface lo")


def test_an_unknown_interface_is_named_with_the_ones_there_are():
    with pytest.raises(host_ip.InterfaceError, match=r"no network interface 'nope0'.*lo"):
        host_ip.own_ip("nope0")
    # The launcher's error for it is its own (the same message).
    with pytest.raises(plan.LaunchError, match="nope0"):
        launcher.own_ip("nope0")


def test_a_route_is_the_kernels_and_an_unroutable_host_is_none():
    assert host_ip.route_ip("127.0.0.1") == "127.0.0.1"
    if socket.has_ipv6:
        assert host_ip.route_ip("::1") in ("::1", None)
    ip, how = host_ip.own_ip()
    assert ip and how


def test_the_cli_and_the_launcher_share_it():
    from zray.scripts import cli
    import argparse
    args = argparse.Namespace(node_ip_address=None, interface="lo", address=None, port=0)
    assert cli._node_ip(args)[0] == launcher.own_ip("lo") == "127.0.0.1"
    args = argparse.Namespace(node_ip_address=None, interface=None, address="127.0.0.1:6379",
                              port=0)
    assert cli._node_ip(args)[0] == launcher.own_ip(None, "127.0.0.1") == "127.0.0.1"
