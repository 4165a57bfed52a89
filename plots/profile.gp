# profile.gp -- the per-unit budget of a run's best configuration: one bar per unit (plots/profile.dat:
# position value kind [name]). A model's linear layers or sub-blocks are grouped by block and coloured by
# layer type; a problem's units (profile_by_name = 1) are labelled with their own names, read from the
# data file's fourth column (every name_step-th bar when there are many). Run by `evobudget plot` (datadir,
# ext).
if (ext eq 'png') { set terminal pngcairo size 1100,480 enhanced font 'DejaVu Sans,10' } else { set terminal svg size 1100,480 enhanced font 'DejaVu Sans,10' background rgb 'white' }
load datadir.'/plots/vars.gp'
set output datadir.'/profile.'.ext
set title run_title.': budget per unit' noenhanced
set ylabel profile_ylabel
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top noenhanced
set yrange [0:*]
set offsets 0.5, 0.5, graph 0.08, 0
set grid ytics
if (profile_by_name) {
  set xlabel 'unit'
  set xtics noenhanced rotate by 45 right nomirror
  set xrange [-0.7:n_units - 0.3]
  plot datadir.'/plots/profile.dat' u 1:2:xtic(int($1) % name_step == 0 ? stringcolumn(4) : '') w boxes lc rgb '#1f77b4' notitle
} else {
  set xlabel 'block'
  eval profile_xtics
  plot for [i=1:words(kind_ids)] datadir.'/plots/profile.dat' u ($3 == word(kind_ids, i) + 0 ? $1 : 1/0):2 w boxes lc (word(kind_ids, i) + 1) t word(kinds, word(kind_ids, i) + 1)
}
