using Qed.Formats.Qcow2;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>In-flight claims: overlapping runs see each other, release wakes waiters, and a stale release frees nothing.</summary>
public sealed class Qcow2ClusterClaimsTests
{
    [Fact]
    public async Task AClaimIsSeenByOverlappingRunsUntilReleased()
    {
        var claims = new Qcow2ClusterClaims();
        Assert.Null(claims.InFlight(0, 100));
        var token = claims.Claim(10, 12);
        Assert.Equal(3, claims.Count);
        Assert.Null(claims.InFlight(0, 9));
        Assert.Null(claims.InFlight(13, 20));
        var wait = claims.InFlight(12, 20);
        Assert.NotNull(wait);
        Assert.False(wait!.IsCompleted);
        claims.Release(10, 12, token);
        await wait.WaitAsync(TimeSpan.FromSeconds(5)); // woken
        Assert.Null(claims.InFlight(0, 100));
        Assert.Equal(0, claims.Count);
    }

    [Fact]
    public void AReleaseLeavesALaterClaimOfTheSameClusterAlone()
    {
        var claims = new Qcow2ClusterClaims();
        var first = claims.Claim(5, 6);
        claims.Release(5, 6, first);
        var second = claims.Claim(6, 7);
        claims.Release(5, 6, first); // released twice (a retried cleanup): must not drop the second request's claim
        Assert.NotNull(claims.InFlight(6, 6));
        Assert.Equal(2, claims.Count);
        claims.Release(6, 7, second);
        Assert.Equal(0, claims.Count);
    }
}
