"""The rule tests' fixtures: `rule_runner`, the one `RuleRunner` of the pytest run, and `case`, a
directory of its build root for one test's targets (`ai_agent.testutil`)."""

from ai_agent.testutil import case, rule_runner  # noqa: F401
