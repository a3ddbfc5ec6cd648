import pytest

from nullswap.errors import DuplicateNameError, InputError, UnknownModelError
from nullswap.registry import Registry


def test_register_get_names_and_duplicates():
    reg: Registry[int] = Registry("number")
    assert reg.register("two", 2) == 2
    reg.register("one", 1)
    assert reg.get("one") == 1 and reg.names() == ["one", "two"] and "two" in reg and len(reg) == 2
    assert reg.items() == [("one", 1), ("two", 2)]
    with pytest.raises(DuplicateNameError, match="'one'"):
        reg.register("one", 3)
    assert isinstance(DuplicateNameError("x", "y"), ValueError)
    reg.register("one", 3, overwrite=True)
    assert reg.get("one") == 3
    with pytest.raises(InputError):
        reg.register("", 0)


def test_unknown_name_lists_known_ones():
    reg: Registry[int] = Registry("number")
    reg.register("one", 1)
    with pytest.raises(UnknownModelError, match=r"unknown number 'three'; known: one"):
        reg.get("three")


def test_loader_runs_once_before_first_lookup_and_may_register():
    calls = []
    reg: Registry[str] = Registry("thing", loader=lambda: calls.append(reg.register("builtin", "b")))
    reg.register("user", "u")  # registering does not load
    assert calls == []
    assert reg.names() == ["builtin", "user"] and reg.get("builtin") == "b"
    reg.get("user")
    assert len(calls) == 1


def test_failing_loader_is_retried():
    state = {"n": 0}

    def loader():
        state["n"] += 1
        if state["n"] == 1:
            raise ImportError("boom")

    reg: Registry[int] = Registry("thing", loader=loader)
    with pytest.raises(ImportError):
        reg.names()
    assert reg.names() == [] and state["n"] == 2


def test_project_registries_use_it():
    from nullswap.faces.detection import DETECTORS, list_detectors
    from nullswap.faces.templates import TEMPLATES
    from nullswap.hub.registry import WEIGHTS
    from nullswap.manipulators.base import MANIPULATORS, list_manipulators
    from nullswap.protectors.base import PROTECTORS, list_protectors
    from nullswap.recognizers.registry import RECOGNIZERS, list_recognizers

    for reg in (DETECTORS, TEMPLATES, WEIGHTS, MANIPULATORS, PROTECTORS, RECOGNIZERS):
        assert isinstance(reg, Registry)
    assert {"mtcnn", "yunet", "scrfd"} <= set(list_detectors())
    assert {"nullswap", "pgd", "fgsm", "clean", "idguard", "ars", "retentive"} <= set(list_protectors())
    assert {"surrogate-ae", "swapper-celeba", "stargan-celeba", "simswap"} <= set(list_manipulators())
    assert {"dlib-resnet29", "arcface-r50", "sface", "arcface-mbf"} <= set(list_recognizers())
    with pytest.raises(UnknownModelError, match="known: .*dlib-resnet29"):
        RECOGNIZERS.get("dlib-resnet-29")


def test_factories_reject_unknown_keywords_naming_the_accepted_ones():
    from nullswap.faces.detection import create_detector
    from nullswap.manipulators import create_manipulator
    from nullswap.protectors import create_protector

    with pytest.raises(InputError, match=r"'stpes'.*did you mean 'steps'"):
        create_protector("pgd", stpes=3)
    with pytest.raises(InputError, match=r"'strenght'.*did you mean 'strength'"):
        create_protector("nullswap", strenght="low")
    with pytest.raises(InputError, match=r"'checkpiont'"):
        create_protector("idguard", checkpiont="x")
    with pytest.raises(InputError, match=r"'checkpoint'"):
        create_protector("clean", checkpoint="x")
    create_protector("clean", strength="high", device="cpu")  # what every caller passes
    with pytest.raises(InputError, match=r"'min_face'.*min_face_size"):
        create_detector("mtcnn", min_face=40)
    with pytest.raises(InputError, match=r"'treads'.*did you mean 'threads'"):
        create_detector("scrfd", treads=1)
    with pytest.raises(InputError, match=r"pretrained=False"):
        create_manipulator("surrogate-ae", checkpint="x")
    with pytest.raises(InputError, match=r"'chekpoint'"):
        create_manipulator("stargan-celeba", chekpoint="x", pretrained=False)


def test_protector_factories_name_their_keywords():
    """No protector factory swallows keywords with ``**_``: a misspelling fails, wherever the factory is called."""
    import inspect

    from nullswap.protectors import create_protector
    from nullswap.protectors.base import PROTECTORS

    for name in PROTECTORS.names():
        params = inspect.signature(PROTECTORS.get(name).factory).parameters.values()
        assert not any(p.kind is p.VAR_KEYWORD and p.name.startswith("_") for p in params), name
    with pytest.raises(InputError, match=r"'noise_scal'.*did you mean 'noise_scale'"):
        create_protector("nullswap", noise_scal=0.5)
    with pytest.raises(InputError, match=r"'psnr_flor'.*did you mean 'psnr_floor'"):
        create_protector("nullswap", psnr_flor=30.0)
    with pytest.raises(TypeError, match="noise_scal"):  # called directly, the factory refuses it too
        PROTECTORS.get("nullswap").factory(noise_scal=0.5)
    for name in ("ars", "idguard", "retentive"):
        with pytest.raises(TypeError, match="strenght"):
            PROTECTORS.get(name).factory(strenght="low")


def test_check_keywords_lets_forwarding_factories_through():
    from nullswap.registry import accepted_keywords, check_keywords

    def swallow(a=1, **_):
        return a

    def forward(a=1, **config):
        return a

    assert accepted_keywords(swallow) == (["a"], False)
    assert accepted_keywords(forward) == (["a"], True)
    check_keywords("thing", "forward", forward, {"b": 2})
    with pytest.raises(InputError, match=r"thing 'swallow': expected keyword arguments among \['a'\], got unknown 'b'"):
        check_keywords("thing", "swallow", swallow, {"b": 2})


def test_create_recognizer_rejects_unknown_keywords():
    from nullswap.recognizers import create_recognizer

    with pytest.raises(InputError, match=r"'weight_dir'.*did you mean 'weights_dir'"):
        create_recognizer("mobilefacenet-casia", pretrained=False, weight_dir="x")
