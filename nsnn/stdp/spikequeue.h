// nsnn's drop-in replacement for Brian2 2.9's CSpikeQueue (brian2/synapses/cspikequeue.cpp), copied over
// brianlib/spikequeue.h of a cpp_standalone project by nsnn.stdp.engine.patch_spike_queue.
//
// Brian2 queues every synaptic event of a spike on its own: one index per synapse, per spike. Here each
// source's synapses are grouped at prepare() into *runs*: consecutive synapse indices with the same delay
// (the X->Ae synapses of one input are stored sorted by delay, so ~21 runs per input at dt = 0.5 ms and
// delays up to 10 ms). A spike queues one [begin, end) range per run, so pushing costs the same however
// many synapses a run keeps after pruning; peek() expands the due ranges into the index list the
// generated code reads. The list holds the same indices in the same order as Brian2's (per slot: spikes
// in push order, each spike's synapses in index order), so the simulation is unchanged.
#include <algorithm>
#include <cassert>
#include <utility>
#include <vector>

#include "stdint_compat.h"
using namespace std;

class CSpikeQueue
{
public:
    typedef pair<int32_t, int32_t> Range;  // synapse indices [first, second)
    struct Run { int delay; Range synapses; };

    vector< vector<Range> > queue;  // queue[(offset + d) % queue.size()]: events due d steps from now
    vector<int32_t> due;            // the current slot's events as synapse indices (filled by peek)
    bool due_ready;                 // `due` is up to date (Brian2's SynapticPathway peeks twice per step)
    vector<Run> runs;               // the runs of every source, source by source
    vector<int> run_start;          // runs of source s: runs[run_start[s] .. run_start[s + 1])
    double dt;
    int offset;
    int32_t source_start;
    int32_t source_end;
    int openmp_padding;

    CSpikeQueue(int _source_start, int _source_end)
        : due_ready(false), dt(0.0), offset(0), source_start(_source_start), source_end(_source_end),
          openmp_padding(0)
    {
        queue.resize(1);
    }

    template <typename scalar> void prepare(scalar *real_delays, int n_delays, int32_t *sources,
                                            int n_synapses, double _dt)
    {
        assert(n_delays == 1 || n_delays == n_synapses);
        due_ready = false;
        if (dt != 0.0 && dt != _dt)  // a new dt: move the queued events to the nearest new slot
        {
            const vector< vector<Range> > old = queue;
            const double factor = dt / _dt;
            queue.clear();
            queue.resize((size_t)(old.size() * factor) + 1);
            for (size_t i = 0; i < old.size(); i++)
                queue[(size_t)(i * factor + 0.5)] = old[(i + offset) % old.size()];
            offset = 0;
        }
        dt = _dt;

        vector<int> delays(n_delays);
        int max_delay = 0;
        for (int i = 0; i < n_delays; i++)
        {
            delays[i] = (int)(real_delays[i] / _dt + 0.5);
            max_delay = max(max_delay, delays[i]);
        }
        const int n_sources = source_end - source_start;
        vector< vector<int> > by_source(n_sources);  // local indices, ascending
        for (int i = 0; i < n_synapses; i++)
            by_source[sources[i] - source_start].push_back(i);
        runs.clear();
        run_start.assign(1, 0);
        for (int s = 0; s < n_sources; s++)
        {
            const vector<int> &syn = by_source[s];
            for (size_t k = 0; k < syn.size();)
            {
                const int delay = n_delays == 1 ? delays[0] : delays[syn[k]];
                size_t end = k + 1;
                while (end < syn.size() && syn[end] == syn[end - 1] + 1
                       && (n_delays == 1 || delays[syn[end]] == delay))
                    end++;
                Run run = {delay, Range(syn[k] + openmp_padding, syn[end - 1] + 1 + openmp_padding)};
                runs.push_back(run);
                k = end;
            }
            run_start.push_back((int)runs.size());
        }
        ensure_delay(max_delay);
    }

    pair<int, vector< vector<int32_t> > > _full_state()
    {
        vector< vector<int32_t> > events(queue.size());
        for (size_t slot = 0; slot < queue.size(); slot++)
            expand(queue[slot], events[slot]);
        return pair<int, vector< vector<int32_t> > >(offset, events);
    }

    void _clear()
    {
    }

    void _restore_from_full_state(const pair<int, vector< vector<int32_t> > > state)
    {
        const vector< vector<int32_t> > &events = state.second;
        due_ready = false;
        queue.clear();
        queue.resize(max(events.size(), (size_t)1));
        for (size_t slot = 0; slot < events.size(); slot++)
            for (size_t k = 0; k < events[slot].size(); k++)
                queue[slot].push_back(Range(events[slot][k], events[slot][k] + 1));
        offset = state.first;
    }

    void ensure_delay(int delay)
    {
        if (delay < (int)queue.size())
            return;
        rotate(queue.begin(), queue.begin() + offset, queue.end());
        offset = 0;
        queue.resize(delay + 1);
    }

    void push(int32_t *spikes, int nspikes)
    {
        if (nspikes == 0)
            return;
        due_ready = false;
        const int32_t *first = lower_bound(spikes, spikes + nspikes, source_start);
        const int32_t *last = upper_bound(spikes, spikes + nspikes, source_end - 1);
        const int size = (int)queue.size();
        for (const int32_t *spike = first; spike < last; spike++)
        {
            const int source = *spike - source_start;
            for (int r = run_start[source]; r < run_start[source + 1]; r++)
            {
                int slot = offset + runs[r].delay;
                if (slot >= size)
                    slot -= size;
                queue[slot].push_back(runs[r].synapses);
            }
        }
    }

    vector<int32_t>* peek()
    {
        if (!due_ready)
            expand(queue[offset], due);
        due_ready = true;
        return &due;
    }

    void advance()
    {
        due_ready = false;
        queue[offset].clear();
        offset = (offset + 1) % queue.size();
    }

private:
    static void expand(const vector<Range> &ranges, vector<int32_t> &indices)
    {
        size_t n = 0;
        for (size_t k = 0; k < ranges.size(); k++)
            n += ranges[k].second - ranges[k].first;
        indices.resize(n);
        int32_t *out = indices.data();
        for (size_t k = 0; k < ranges.size(); k++)
        {
            const int32_t first = ranges[k].first, length = ranges[k].second - first;
            for (int32_t i = 0; i < length; i++)
                out[i] = first + i;
            out += length;
        }
    }
};
