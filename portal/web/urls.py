from __future__ import annotations

from django.urls import path

from . import api_keys, compute_groups, examples, jobs, statements, views, worker_files, workers
from .history import job_history, worker_history

urlpatterns = [
    path("", views.home, name="home"),
    path("portal/worker/", views.worker, name="worker"),
    path("portal/worker/history.json", worker_history, name="worker_history"),
    path("worker/runtime/<str:name>", worker_files.runtime_file, name="worker_runtime_file"),
    path("worker/embed.html", worker_files.embed_page, name="worker_embed_page"),
    path("worker/embed.json", worker_files.embed_access, name="worker_embed_access"),
    path("worker/<path:path>", worker_files.worker_file, name="worker_file"),
    path("portal/accounts/", views.accounts, name="accounts"),
    path("portal/accounts/new/", views.new_account_key, name="new_account_key"),
    path("portal/accounts/transfer/", views.transfer, name="transfer"),
    path("portal/accounts/<str:address>/statement/", statements.statement, name="statement"),
    path(
        "portal/accounts/<str:address>/statement.csv",
        statements.statement_csv,
        name="statement_csv",
    ),
    path("portal/keys/<str:address>/balance/", views.key_balance, name="key_balance"),
    path("portal/keys/<str:address>/keystore/", views.download_keystore, name="download_keystore"),
    path(
        "portal/keys/<str:address>/passphrase/", views.change_passphrase, name="change_passphrase"
    ),
    path("portal/first-devs/", views.first_devs, name="first_devs"),
    path("portal/first-devs/join/", views.join, name="join_first_devs"),
    path("portal/first-devs/identity/", views.new_identity_key, name="new_identity_key"),
    path("portal/first-devs/api-keys/", api_keys.create_api_key, name="create_api_key"),
    path(
        "portal/first-devs/api-keys/<str:prefix>/revoke/",
        api_keys.revoke_api_key,
        name="revoke_api_key",
    ),
    path("portal/jobs/", jobs.jobs, name="jobs"),
    path("portal/jobs/status.json", jobs.jobs_status, name="jobs_status"),
    path("portal/jobs/<str:job_id>/cancel/", jobs.cancel, name="cancel_job"),
    path("portal/jobs/<str:job_id>/results.json", jobs.results, name="job_results"),
    path("portal/jobs/<str:job_id>/history.json", job_history, name="job_history"),
    path("portal/compute-groups/", compute_groups.compute_groups, name="compute_groups"),
    path("portal/compute-groups/new/", compute_groups.create, name="create_compute_group"),
    path(
        "portal/compute-groups/<slug:join_key>/rotate/",
        compute_groups.rotate_secret,
        name="rotate_compute_group_secret",
    ),
    path(
        "portal/compute-groups/<slug:join_key>/jobs/<str:job_id>/remove/",
        compute_groups.remove_job,
        name="remove_compute_group_job",
    ),
    path("portal/workers/", workers.workers, name="workers"),
    path("portal/workers/new/", workers.create_token, name="create_worker_token"),
    path(
        "portal/workers/<str:prefix>/revoke/",
        workers.revoke_token,
        name="revoke_worker_token",
    ),
    path("dcp-client/dcp-client.js", examples.dcp_client_script, name="dcp_client_script"),
    path("dcp-client/dcp-worker.js", examples.dcp_worker_script, name="dcp_worker_script"),
    path("examples/uppercase/", examples.uppercase, name="example_uppercase"),
    path("examples/embedded-worker/", examples.embedded_worker, name="example_embedded_worker"),
]
