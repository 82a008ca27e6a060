"""The client layer: jobs built, deployed and followed from Python.

- `api`: compute_for() and jobs(), the way in;
- `job`: the `Job` handle, thin over `state.JobState`;
- `execution`: one exec(): deploy, upload, follow, collect; `deploy`: the signed deploy frame;
- `control`: add_slices, close, cancel, fetch and Ctrl-C, on short connections;
- `attach`: what an attached handle learns of its job from the scheduler;
- `connection`: one authenticated socket (requests and replies as protocol models);
  `remote`: short connections for one request or a few;
- `inputs`, `work`, `options`: what a job is made of, checked before anything is sent;
- `blobs`: `dcp.Blob` and values in their JSON form (bytes, blob references);
  `store`: the blobs a frame references, uploaded to the portal's store before it is sent;
- `results`, `events`: what a job gives back; `cheques`: what the account key signs.

Imports the protocol, the keys, `dcp.config` and `dcp.errors`; never the other way round.
"""
