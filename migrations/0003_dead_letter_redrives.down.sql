DROP TABLE dead_letter_redrives;
