"""BeginQuorumEpoch (53): a newly elected leader announces itself to the voters."""
from broker.apis.quorum_partitions import answer_per_partition
from broker.messages import BeginQuorumEpochRequest, BeginQuorumEpochResponse
from broker.protocol import api


@api(BeginQuorumEpochRequest, 0, 0, inter_node=True)
async def begin_quorum_epoch(request, ctx):
    async def answer(wanted) -> dict:
        return {"error_code": await ctx.node.quorum.begin_epoch(wanted.leader_id,
                                                                wanted.leader_epoch)}

    return await answer_per_partition(request, BeginQuorumEpochResponse, ctx, answer)
