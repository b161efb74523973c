from deploysnake import deploy, failures, job, summary


def main(sm):
    # A format whose accuracy through the server failed (a failure record) is not deployed.
    failed = failures.failed_formats(sm.input.accuracy)
    deploy.write_deploy(
        [e for e in sm.params.entries if (e["model"], e["format"]) not in failed],
        sm.params.triton,
        sm.wildcards.device,
        sm.output.repository,
        sm.output.archive,
        # plan.scale instances: the instance count the capacity plan asks for
        summary.planned_instances(sm.input.summary[0], sm.wildcards.device)
        if sm.input.summary
        else None,
    )


job.run(snakemake, main)
