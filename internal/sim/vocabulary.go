package sim

// vocabulary is the fixed word list generated tokens are drawn from.
// Its order is part of the simulator's output: changing a word changes
// every generated text, so treat it as frozen. Words are plain ASCII
// with no whitespace and nothing JSON would escape.
var vocabulary = [...]string{
	"the", "of", "and", "to", "in", "is", "that", "it", "for", "on", "with", "as",
	"was", "at", "by", "be", "this", "are", "from", "or", "have", "an", "they",
	"which", "one", "you", "had", "not", "but", "what", "all", "were", "when",
	"we", "there", "can", "more", "if", "no", "out", "so", "said", "up", "its",
	"about", "into", "than", "them", "only", "other", "time", "new", "some",
	"could", "these", "two", "may", "first", "then", "do", "any", "like", "my",
	"now", "over", "such", "our", "man", "me", "even", "most", "made", "after",
	"also", "did", "many", "before", "must", "through", "back", "years", "where",
	"much", "your", "way", "well", "down", "should", "because", "each", "just",
	"those", "people", "how", "too", "little", "state", "good", "very", "make",
	"world", "still", "own", "see", "men", "work", "long", "get", "here",
	"between", "both", "life", "being", "under", "never", "day", "same",
	"another", "know", "while", "last", "might", "us", "great", "old", "year",
	"off", "come", "since", "against", "go", "came", "right", "used", "take",
	"three", "states", "himself", "few", "house", "use", "during", "without",
	"again", "place", "american", "around", "however", "home", "small", "found",
	"thought", "went", "say", "part", "once", "general", "high", "upon", "school",
	"every", "left", "hand", "number", "course", "war", "until", "always", "away",
	"something", "fact", "though", "water", "less", "public", "put", "think",
	"almost", "enough", "far", "took", "head", "yet", "government", "system",
	"better", "set", "told", "nothing", "night", "end", "why", "called", "didnt",
	"eyes", "find", "going", "look", "asked", "later", "knew", "point", "next",
	"program", "city", "business", "give", "group", "toward", "young", "days",
	"let", "room", "president", "side", "social", "given", "present", "several",
	"order", "national", "possible", "rather", "second", "face", "per", "among",
	"form", "important", "often", "things", "looked", "early", "white", "case",
	"john", "become", "large", "big", "need", "four", "within", "felt", "along",
	"children", "saw", "best", "church", "ever", "least", "power", "development",
	"light", "seemed", "family", "interest",
}
