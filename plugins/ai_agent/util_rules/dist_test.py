"""Where image targets go in `dist/`: `ArchiveOutputPaths` (every image target's `output_path`,
normalised), and `checked_output_path` as `package` meets it, refusing a path outside `dist/`,
inside the shared layout `dist/oci/`, or one that another image target writes, naming both
targets, before anything is built; and `check_layout_name`, refusing an image named as another
target's, which the shared layout could hold only once."""

from __future__ import annotations

import posixpath

import pytest
from pants.core.goals.package import BuiltPackage, PackageFieldSet
from pants.engine.addresses import Address
from pants.testutil.rule_runner import RuleRunner

from ai_agent.goals.package import AgentPackageFieldSet, BaseImagePackageFieldSet
from ai_agent.testutil import CaseDir, failure
from ai_agent.util_rules.dist import ArchiveOutputPaths, ImageNameProblem, OutputPathProblem

SOURCES = 'python_sources(name="src", sources=["app/*.py"])\n'


def _agent(name: str, fields: str = "") -> str:
    return f'ai_agent(name="{name}", entry_point="app", dependencies=[":src"]{fields})\n'


@pytest.fixture
def case(case: CaseDir) -> CaseDir:
    case.write({"agent.yaml": "name: agent\n", "app/__main__.py": ""})
    return case


def _package_fails(
    case: CaseDir, target_name: str, *parts: str, problem: type = OutputPathProblem
) -> str:
    target = case.rule_runner.get_target(Address(case.path, target_name=target_name))
    field_set: PackageFieldSet = (
        AgentPackageFieldSet.create(target)
        if AgentPackageFieldSet.is_applicable(target)
        else BaseImagePackageFieldSet.create(target)
    )
    return failure(problem, case.rule_runner, BuiltPackage, [field_set], *parts)


def test_every_image_target_has_its_path_in_dist(rule_runner: RuleRunner, case: CaseDir) -> None:
    case.write(
        {
            "BUILD": SOURCES
            + _agent("agent")
            + _agent("named", ', output_path="images/../named.tar"')
            + 'debian_base(name="deb")\n'
            + 'oci_base(name="reg", image="busybox:1", output_path="./bases/reg.tar")\n'
            # Not an image target: not listed.
            + 'python_requirement(name="req", requirements=["numpy"])\n'
        }
    )
    owners = rule_runner.request(ArchiveOutputPaths, []).owners
    prefix = case.path.replace("/", ".")

    def owner(name: str) -> tuple:
        return (Address(case.path, target_name=name),)

    assert owners[f"{prefix}/agent.tar"] == owner("agent")
    assert owners["named.tar"] == owner("named")
    assert owners[f"{prefix}/deb.tar"] == owner("deb")
    assert owners["bases/reg.tar"] == owner("reg")
    assert not any(
        address.spec_path == case.path and address.target_name == "req"
        for addresses in owners.values()
        for address in addresses
    )


@pytest.mark.parametrize("path", ["../../x.tar", "/tmp/x.tar", "a/../../x.tar", ".."])
def test_a_path_outside_dist_is_refused(case: CaseDir, path: str) -> None:
    case.write({"BUILD": SOURCES + _agent("agent", f", output_path={path!r}")})
    _package_fails(
        case,
        "agent",
        f"{case.address()}: field `output_path`: {path!r} is outside dist/; give a relative path"
        " inside it, e.g. `agents/router.tar`",
    )


def test_two_agents_writing_one_path_are_refused_naming_both(case: CaseDir) -> None:
    case.write(
        {
            "BUILD": SOURCES
            + _agent("agent", ', output_path="x.tar"')
            + _agent("twin", ', output_path="sub/../x.tar"')
        }
    )
    _package_fails(
        case,
        "agent",
        f"{case.address()}: field `output_path`: dist/x.tar is also where {case.address('twin')}"
        " write(s) an image; give each target its own `output_path`",
    )
    _package_fails(
        case,
        "twin",
        f"{case.address('twin')}: field `output_path`: dist/x.tar is also where {case.address()}"
        " write(s) an image",
    )


def test_a_base_writing_an_agents_default_path_is_refused(case: CaseDir) -> None:
    default = f"{case.path.replace('/', '.')}/agent.tar"
    case.write(
        {"BUILD": SOURCES + _agent("agent") + f'debian_base(name="deb", output_path="{default}")\n'}
    )
    _package_fails(
        case,
        "deb",
        f"{case.address('deb')}: field `output_path`: dist/{default} is also where"
        f" {case.address()} write(s) an image",
    )


@pytest.mark.parametrize("path", ["oci/x.tar", "./oci", ".ai-agent/x.tar"])
def test_a_path_inside_the_shared_layout_is_refused(case: CaseDir, path: str) -> None:
    case.write({"BUILD": SOURCES + _agent("agent", f", output_path={path!r}")})
    top = posixpath.normpath(path).split("/")[0]
    _package_fails(
        case,
        "agent",
        f"{case.address()}: field `output_path`: {path!r} is inside dist/{top}/, which holds the"
        " OCI layout of every image; give a path outside it",
    )


def test_two_images_with_one_name_are_refused_naming_both(case: CaseDir) -> None:
    case.write(
        {
            "BUILD": SOURCES
            + _agent("one", ', repository="shared"')
            + _agent("two", ', repository="shared", image_tags=["v1", "latest"]')
            + _agent("apart", ', repository="shared", image_tags=["v2"]')
            + _agent("x", ', repository="deb"')
            + 'debian_base(name="deb")\n'
        }
    )
    for one, other in (("one", "two"), ("two", "one")):
        _package_fails(
            case,
            one,
            f"{case.address(one)}: its image is named shared:latest, as is the image of"
            f" {case.address(other)}; dist/oci/ holds one image per name: give each target its"
            " own `repository` or `image_tags` (a base image: its own target name)",
            problem=ImageNameProblem,
        )
    # A base image is named by its target name.
    _package_fails(
        case,
        "deb",
        f"{case.address('deb')}: its image is named deb:latest, as is the image of"
        f" {case.address('x')}",
        problem=ImageNameProblem,
    )
