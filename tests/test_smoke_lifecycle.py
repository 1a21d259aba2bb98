from engine import Actor, Flowkernel


def test_default_lifecycle_place_and_enable(fk: Flowkernel) -> None:
    fk.definitions.add_class("region", "Region")
    fk.definitions.add_default_methods("region")
    alice = Actor.user(1, 10)
    item = fk.place("region", "region", 1, alice)
    assert item.state == "created"
    assert fk.execute(item.id, "enable", alice).to_state == "enabled"
    fk.definitions.add_action("ping")
