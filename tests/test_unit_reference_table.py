"""Reference counting without processes: the messages a table sends are recorded."""
import pytest

from zray.objects.reference_table import ReferenceTable

ME, OTHER, THIRD = "me", "other", "third"


@pytest.fixture
def sent():
    return []


@pytest.fixture
def table(sent):
    return ReferenceTable(ME, lambda o, i, n: sent.append(("borrow", o, i, n)),
                          lambda o, i, n: sent.append(("unborrow", o, i, n)),
                          lambda i: sent.append(("free", i)))


def test_owned_object_freed_when_last_local_ref_goes(table, sent):
    table.add_owned(b"x")
    table.add_local(b"x", ME)
    table.add_local(b"x", ME)
    table.remove_local(b"x")
    assert sent == []
    table.remove_local(b"x")
    assert sent == [("free", b"x")]
    assert b"x" not in table


def test_holds_keep_an_object_alive(table, sent):
    table.add_owned(b"x")
    table.add_local(b"x", ME)
    table.hold([(b"x", ME)])
    table.remove_local(b"x")
    assert sent == []
    table.release([b"x"])
    assert sent == [("free", b"x")]


def test_borrowers_keep_an_owned_object_alive_even_out_of_order(table, sent):
    table.add_owned(b"x")
    table.add_local(b"x", ME)
    table.remove_borrower(b"x", OTHER, 1)       # the removal overtook the addition
    table.remove_local(b"x")
    assert sent == []                           # a count of -1 is not zero
    table.add_borrower(b"x", OTHER, 1)
    assert sent == [("free", b"x")]


def test_a_deserialized_borrowed_ref_registers_once_and_unregisters(table, sent):
    table.add_local(b"y", OTHER)
    table.on_deserialized(b"y", OTHER)
    table.add_local(b"y", OTHER)
    table.on_deserialized(b"y", OTHER)
    assert sent == [("borrow", OTHER, b"y", 1)]
    table.remove_local(b"y")
    table.remove_local(b"y")
    assert sent[-1] == ("unborrow", OTHER, b"y", 1)


def test_contained_refs_live_as_long_as_their_container(table, sent):
    table.add_local(b"inner", OTHER)
    table.on_deserialized(b"inner", OTHER)
    table.add_owned(b"outer", contained=[(b"inner", OTHER)])
    table.add_local(b"outer", ME)
    table.remove_local(b"inner")
    assert ("unborrow", OTHER, b"inner", 1) not in sent
    table.remove_local(b"outer")
    assert ("free", b"outer") in sent and ("unborrow", OTHER, b"inner", 1) in sent


def test_results_with_refs_registered_for_us(table, sent):
    table.add_owned(b"ret")
    table.add_local(b"ret", ME)
    table.set_contained(b"ret", [(b"z", THIRD)], registered_for_us=True)
    table.remove_local(b"ret")
    assert sent == [("free", b"ret"), ("unborrow", THIRD, b"z", 1)]


def test_result_arriving_for_a_freed_object_returns_its_registrations(table, sent):
    table.set_contained(b"gone", [(b"z", THIRD), (b"mine", ME)], registered_for_us=True)
    assert sent == [("unborrow", THIRD, b"z", 1)]


def test_dead_borrower_is_forgotten(table, sent):
    table.add_owned(b"x")
    table.add_borrower(b"x", OTHER, 2)
    table.drop_borrower_everywhere(OTHER)
    assert sent == [("free", b"x")]


def test_a_ref_read_from_a_borrowed_value_registers_through_its_holder(sent):
    """The driver reads THIRD's object, whose value holds a ref OTHER owns: the registration
    goes to THIRD (which holds the ref until the driver releases THIRD's object, on the same
    channel), not straight to OTHER, where it could arrive after THIRD's release."""
    forwarded = []
    reader = ReferenceTable(ME, lambda o, i, n: sent.append(("borrow", o, i, n)),
                            lambda o, i, n: sent.append(("unborrow", o, i, n)),
                            lambda i: sent.append(("free", i)),
                            forward=lambda *a: forwarded.append(a))
    reader.reading.owner = THIRD
    reader.add_local(b"inner", OTHER)
    reader.on_deserialized(b"inner", OTHER, through_holder=True)
    reader.reading.owner = None
    assert sent == [("borrow", THIRD, b"inner", 1)]
    reader.remove_local(b"inner")             # our release goes to the owner itself
    assert sent[-1] == ("unborrow", OTHER, b"inner", 1)

    holder = ReferenceTable(THIRD, *(lambda *a: None,) * 3, forward=lambda *a: forwarded.append(a))
    holder.hold([(b"inner", OTHER)])          # contained in THIRD's object
    holder.add_borrower(b"inner", ME, 1)      # what the reader sent: passed on to the owner
    assert forwarded == [(OTHER, b"inner", ME, 1)]
    holder.add_borrower(b"unknown", ME, 1)    # nothing held: nothing to pass on
    assert forwarded == [(OTHER, b"inner", ME, 1)]


def test_without_a_holder_the_registration_goes_to_the_owner(table, sent):
    table.add_local(b"inner", OTHER)
    table.on_deserialized(b"inner", OTHER, through_holder=True)
    assert sent == [("borrow", OTHER, b"inner", 1)]
