# front.gp -- the Pareto front of a run (plots/front.dat: x fitness) and its best point with the runs given
# to `evobudget plot --with` as labelled points (plots/baselines.dat: x fitness "label").
# Run by `evobudget plot`, which sets datadir (the run directory) and ext (png or svg).
if (ext eq 'png') { set terminal pngcairo size 900,560 enhanced font 'DejaVu Sans,10' } else { set terminal svg size 900,560 enhanced font 'DejaVu Sans,10' background rgb 'white' }
load datadir.'/plots/vars.gp'
set output datadir.'/front.'.ext
set title run_title noenhanced
set xlabel front_xlabel
set ylabel 'fitness: KL(dense || compressed) per token' noenhanced
set grid
set key top left box opaque
set offsets graph 0.08, graph 0.25, graph 0.1, graph 0.1
plot datadir.'/plots/front.dat' u 1:2 w linespoints pt 7 ps 0.7 lc rgb '#1f77b4' t 'front of the run', \
     datadir.'/plots/baselines.dat' u 1:2 w points pt 5 ps 1.3 lc rgb '#d62728' t 'best configuration and other runs', \
     '' u 1:2:3 w labels offset char 1,0.7 left noenhanced notitle
