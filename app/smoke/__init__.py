"""The `smoke` job's handler (`job.run_smoke_job`). What the rest of the service knows about the
kind (its name and iteration count) is `app.kinds.smoke`."""
