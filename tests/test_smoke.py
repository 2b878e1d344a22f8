"""The committed stacks plan under mocks and export what later stacks need."""

from offline import runner


def test_every_committed_stack_plans(committed_plans: dict[str, runner.Plan]) -> None:
    assert set(committed_plans) == {"tooling", "prod", "dev"}
    for plan in committed_plans.values():
        assert plan.registrations, plan.stack
        assert plan.exports["kubeconfig"].secret
