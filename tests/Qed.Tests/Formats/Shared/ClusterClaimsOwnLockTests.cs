using Qed.Formats.Shared;

namespace Qed.Tests.Formats.Shared;

/// <summary>
/// Claims guarded by their own lock (qcow2's use): overlapping runs see a hold until it is released, release wakes
/// waiters, and a stale release frees nothing, even once its claim serves another request.
/// </summary>
public sealed class ClusterClaimsOwnLockTests
{
    [Fact]
    public async Task AHoldIsSeenByOverlappingRunsUntilReleased()
    {
        var claims = new ClusterClaims();
        Assert.Null(claims.FindHolder(0, 101));
        var hold = claims.Take(10, 3);
        Assert.Equal(3, claims.Count);
        Assert.Null(claims.FindHolder(0, 10));
        Assert.Null(claims.FindHolder(13, 8));
        var wait = claims.FindHolder(12, 9);
        Assert.NotNull(wait);
        Assert.False(wait!.IsCompleted);
        claims.Release(hold, 10, 3);
        await wait.WaitAsync(TimeSpan.FromSeconds(5)); // woken
        Assert.Null(claims.FindHolder(0, 101));
        Assert.Equal(0, claims.Count);
    }

    [Fact]
    public void AStaleReleaseLeavesALaterHoldOfTheSameClusterAlone()
    {
        var claims = new ClusterClaims();
        var first = claims.Take(5, 2);
        claims.Release(first, 5, 2);
        var second = claims.Take(6, 2);
        Assert.Same(first.Claim, second.Claim); // the claim is reused: only the hold tells the two uses apart
        claims.Release(first, 5, 2); // released twice (a retried cleanup): must not drop the second request's hold
        Assert.NotNull(claims.FindHolder(6, 1));
        Assert.Equal(2, claims.Count);
        claims.Release(second, 6, 2);
        Assert.Equal(0, claims.Count);
    }

    [Fact]
    public void AReleaseWiderThanItsClaimLeavesOtherClaimsClustersHeld()
    {
        var claims = new ClusterClaims();
        var mine = claims.Take(5, 1);
        var other = claims.Take(6, 1);
        claims.Release(mine, 5, 2); // the range covers 6, which the other hold has
        Assert.NotNull(claims.FindHolder(6, 1));
        Assert.Null(claims.FindHolder(5, 1));
        Assert.Equal(1, claims.Count);
        claims.Release(other, 6, 1);
        Assert.Equal(0, claims.Count);
    }
}
