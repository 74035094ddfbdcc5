"""EndQuorumEpoch (54): a leader stepping down names its preferred successors."""
from broker.apis.quorum_partitions import answer_per_partition
from broker.messages import EndQuorumEpochRequest, EndQuorumEpochResponse
from broker.protocol import api


@api(EndQuorumEpochRequest, 0, 0, inter_node=True)
async def end_quorum_epoch(request, ctx):
    async def answer(wanted) -> dict:
        return {"error_code": await ctx.node.quorum.end_epoch(
            wanted.leader_id, wanted.leader_epoch, list(wanted.preferred_successors))}

    return await answer_per_partition(request, EndQuorumEpochResponse, ctx, answer)
