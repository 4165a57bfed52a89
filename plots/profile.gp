# profile.gp -- the per-unit budget of a run's best configuration: one bar per unit (plots/profile.dat:
# position value kind), grouped by block, coloured by layer type. Run by `evobudget plot` (datadir, ext).
if (ext eq 'png') { set terminal pngcairo size 1100,480 enhanced font 'DejaVu Sans,10' } else { set terminal svg size 1100,480 enhanced font 'DejaVu Sans,10' background rgb 'white' }
load datadir.'/plots/vars.gp'
set output datadir.'/profile.'.ext
set title run_title.': budget per unit' noenhanced
set ylabel profile_ylabel
set xlabel 'block'
eval profile_xtics
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top noenhanced
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set grid ytics
plot for [i=1:words(kind_ids)] datadir.'/plots/profile.dat' u ($3 == word(kind_ids, i) + 0 ? $1 : 1/0):2 w boxes lc (word(kind_ids, i) + 1) t word(kinds, word(kind_ids, i) + 1)
