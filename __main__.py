"""Entry point for `pulumi preview` / `pulumi up`: config -> composition -> exports."""

from program import config, stacks

stacks.export_all(stacks.build(config.from_pulumi()))
